"""Obj-IoU, Func-IoU and F1-IoU (Sec. 3.4, Supp. E; docs/eval.md "Protocol"), torch-free.

A token's map is quantised to uint8 like the authors' evaluation: min-max normalised jointly
with the token's text relevance (Eq. 3's N, min and max taken before the filter, as their
code normalises and then filters), times 255, truncated. It is resized to the mask size
(bilinear) and binarised with OpenCV's Otsu threshold (foreground: value > threshold).

- Obj-IoU: each noun matched to a category scores the IoU of its best token with the
  category's mask; consecutive words of one category count once (best token over them all).
- Func-IoU: each function word scores the fraction of pixels below b, averaged over its
  tokens, where b is the mean Otsu threshold of every noun token of the same answer.
- Both are means over the whole dataset (not per image or class); F1-IoU combines the means.

Maps are projected onto the mask through the grids' boxes (`tamx.geometry.project_frames`):
pixels no grid covers (cropped away or never shown to the model) are not scored at all: they
are left out of the Otsu threshold, of both masks of the IoU and of Func-IoU's fraction. A map
cannot claim them, and an object there cannot be found. For a grid over the whole image this
is the plain bilinear resize of the paper's evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from .activation import activation_maps, class_logits
from .errors import TamxError
from .explain import ExplainSettings, decode_hidden
from .filters import filter_maps
from .geometry import MapProjector, frame_groups, project_maps
from .layout import cell_block_starts, frame_table, map_frames, vision_positions
from .pos import FUNCTION, NOUN, lemma
from .records import Sample


def quantise_maps(final: np.ndarray, before_filter: np.ndarray, relevance: np.ndarray | None = None) -> np.ndarray:
    """uint8 maps [R, V]: floor(255 * (final - lo) / (hi - lo)), clipped to 0..255.

    lo / hi are the min / max of each row of `before_filter` [R, V] joined with the same row
    of `relevance` [R, Q]; a constant row gives zeros.
    """
    final = np.asarray(final, dtype=np.float64).reshape(len(final), -1)
    joined = np.asarray(before_filter, dtype=np.float64).reshape(len(final), -1)
    if relevance is not None and np.size(relevance):
        joined = np.concatenate([joined, np.asarray(relevance, dtype=np.float64).reshape(len(final), -1)], axis=1)
    if joined.shape[1] == 0:
        return np.zeros(final.shape, dtype=np.uint8)
    low, high = joined.min(axis=1, keepdims=True), joined.max(axis=1, keepdims=True)
    span = np.where(high > low, high - low, np.inf)
    return np.clip(np.floor((final - low) / span * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Protocol:
    """How eval turns a variant's stored maps into scores (docs/eval.md "Protocols").

    `tamx` (the default) and `paper` (the authors' evaluation) differ in every field; each
    field is one departure, so a protocol can also switch one of them alone:

    - self_score: the normaliser keeps the token's own predicting score relu(h[P_i - 1] . w[c_i]);
    - last_prompt: it has the score at the position before the first answer token (P_0 - 1);
    - own_class: context tokens of the token's own class keep their raw score (else 0, Eq. 4's r);
    - first_token: the substitute's class and normaliser, "own" (the first prompt token's own
      class, normalised alone) or "greedy" (the best-scoring stored LM-head row at that position,
      normalised with the prompt scores);
    - func_on: Func-IoU's fraction below b on the "mask" (the map projected onto the mask's seen
      pixels) or on the token "grid" (the map's cells);
    - noun_threshold: b is the mean over every noun "token" of its Otsu threshold, or over every
      noun word of the "word-max" (the largest threshold of its tokens);
    - category_match: a noun matching several categories takes the "first" present in the image,
      or the "last" of the record (no entry when that one is absent).
    """

    name: str = "tamx"
    self_score: bool = True
    last_prompt: bool = False
    own_class: bool = False
    first_token: str = "own"
    func_on: str = "mask"
    noun_threshold: str = "token"
    category_match: str = "first"

    @classmethod
    def named(cls, name: str) -> Protocol:
        """The protocol called `name` ("tamx" or "paper")."""
        if name not in PROTOCOLS:
            raise TamxError(f"unknown eval protocol {name!r}; use one of {', '.join(PROTOCOLS)}")
        return PROTOCOLS[name]

    def stored_normaliser(self) -> bool:
        """Whether the normaliser is the stored text relevance (tamx's), not recomputed from the sample."""
        return self.self_score and not self.last_prompt and not self.own_class


PROTOCOLS = {
    "tamx": Protocol(),
    "paper": Protocol(
        name="paper", self_score=False, last_prompt=True, own_class=True, first_token="greedy", func_on="grid",
        noun_threshold="word-max", category_match="last",
    ),
}  # fmt: skip


def parse_threshold(value: str | float | None) -> float | None:
    """None for Otsu ("otsu" or None), else the fixed threshold t in (0, 1) on the normalised map scale."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "otsu"):
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not 0.0 < t < 1.0:  # also refuses NaN
        raise TamxError(
            f"threshold {value!r} is neither 'otsu' nor a number between 0 and 1 (exclusive) on the normalised map "
            "scale; give e.g. 0.5"
        )
    return t


def text_scores(sample: Sample, classes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """relu(h[p] . w[c] + b) [N, P] float32 for every class c (rows) and position p (columns)."""
    hidden, _ = decode_hidden(sample, np.asarray(positions, dtype=np.int64))
    rows, bias = sample.lm_head.weights(np.asarray(classes, dtype=np.int64))
    return np.maximum(class_logits(hidden, rows, bias), 0.0).T


def normaliser_span(sample: Sample, eci: np.ndarray, protocol: Protocol) -> tuple[np.ndarray, np.ndarray]:
    """Min and max [N] of each answer token's ECI map joined with its text scores under `protocol`.

    The text scores of answer token i (class c_i) are relu(h[p] . w[c_i] + b) at every context
    position and at P_j - 1 (the position that predicted answer token j) for j <= i, less
    P_i - 1 (its own predicting score) unless `self_score`, less P_0 - 1 unless `last_prompt`;
    context tokens of class c_i count 0 unless `own_class`.
    """
    answers = sample.answer_positions.astype(np.int64)
    context = sample.context_positions.astype(np.int64)
    classes = sample.input_ids[answers]
    predicting = answers - 1
    positions = np.concatenate([context, predicting])
    scores = text_scores(sample, classes, positions).astype(np.float64)
    if not protocol.own_class:
        scores = np.where(sample.input_ids[positions][None, :] == classes[:, None], 0.0, scores)
    n, m = len(answers), len(context)
    keep = np.zeros(scores.shape, dtype=bool)
    keep[:, :m] = True
    j = np.arange(n)
    keep[:, m:] = j[None, :] <= j[:, None]
    if not protocol.self_score:
        keep[j, m + j] = False
    if not protocol.last_prompt and n:
        keep[:, m] = False
    maps = np.asarray(eci, dtype=np.float64).reshape(n, -1)
    low = np.minimum(maps.min(axis=1, initial=np.inf), np.where(keep, scores, np.inf).min(axis=1, initial=np.inf))
    high = np.maximum(maps.max(axis=1, initial=-np.inf), np.where(keep, scores, -np.inf).max(axis=1, initial=-np.inf))
    return low, high


def quantise_span(final: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """uint8 maps [R, V]: floor(255 * (final - low) / (high - low)) per row, clipped; a row with
    high <= low gives zeros (as `quantise_maps`)."""
    final = np.asarray(final, dtype=np.float64).reshape(len(final), -1)
    low, high = np.asarray(low, dtype=np.float64)[:, None], np.asarray(high, dtype=np.float64)[:, None]
    span = np.where(high > low, high - low, np.inf)
    return np.clip(np.floor((final - low) / span * 255.0), 0, 255).astype(np.uint8)


def resize_map(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 map [h, w] resized (bilinear, OpenCV) to size = (H, W)."""
    return cv2.resize(np.ascontiguousarray(grid, dtype=np.uint8), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def otsu(image: np.ndarray, seen: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """OpenCV's Otsu threshold of a uint8 image and its foreground (value > threshold).

    With `seen` [H, W] bool, the threshold comes from the seen pixels only and unseen pixels
    are never foreground."""
    if seen is None or seen.all():
        threshold, binary = cv2.threshold(np.ascontiguousarray(image), 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        return float(threshold), binary > 0
    values = np.ascontiguousarray(image[seen]).reshape(-1, 1)
    threshold = cv2.threshold(values, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[0] if values.size else 255.0
    return float(threshold), (image > threshold) & seen


def binarise(
    image: np.ndarray, seen: np.ndarray | None = None, threshold: float | None = None
) -> tuple[float, np.ndarray]:
    """(threshold, foreground) of a uint8 map: Otsu's (`otsu`) when `threshold` is None, else the
    fixed 255 * threshold (threshold in (0, 1) on the normalised map scale; foreground: value above it)."""
    if threshold is None:
        return otsu(image, seen)
    level = 255.0 * threshold
    foreground = image > level
    return level, foreground if seen is None else foreground & seen


def project_sample_maps(
    sample: Sample, maps: np.ndarray, size: tuple[int, int], lazy: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Answer-token maps [N, V] (uint8) of a one-image sample projected onto size = (H, W) pixels
    through the grids' boxes (tiles and thumbnail averaged where they overlap, `project_frames`):
    (maps [N, H, W], seen [H, W] bool). lazy: a `ProjectedMaps` instead of the array, which
    projects a token's map when it is first read (eval scores some tokens only)."""
    frames = map_frames(sample.vision_blocks)
    groups = frame_groups(frames)
    if len(groups) != 1 or groups[0][0].kind != "image":
        shown = "; ".join(f"{b.kind} {b.grid}" for b in sample.vision_blocks) or "none"
        raise TamxError(f"sample {sample.id!r}: eval scores samples with one image, this one has {shown}")
    if lazy:
        projected = ProjectedMaps(maps, MapProjector(groups[0], size))
        return projected, projected.seen
    return project_maps(maps, groups[0], size)


class ProjectedMaps:
    """Maps [N, V] (uint8) projected onto [H, W] pixels on demand: `projected[t]` is
    `project_maps(maps, ...)[0][t]`, made the first time it is read and kept; `np.asarray` gives
    the whole [N, H, W] array. `seen`: the pixels a grid covers."""

    def __init__(self, maps: np.ndarray, projector: MapProjector):
        self.maps = np.asarray(maps, dtype=np.uint8)
        self.projector = projector
        self.seen = projector.seen
        self.shape = (len(self.maps), *projector.size)
        self.ndim, self.dtype = 3, np.dtype(np.uint8)
        self._made: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, token: int) -> np.ndarray:
        token = range(len(self))[token]  # a negative index counts from the end; out of range raises IndexError
        if token not in self._made:
            self._made[token] = self.projector.project(self.maps[token])
        return self._made[token]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.stack([self[t] for t in range(len(self))]) if len(self) else np.zeros(self.shape, np.uint8)
        return out if dtype is None else out.astype(dtype)


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """|P ∩ G| / |P ∪ G| of two boolean masks (0 when both are empty)."""
    union = np.count_nonzero(predicted | truth)
    return np.count_nonzero(predicted & truth) / union if union else 0.0


def precision_recall(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Pixel precision |P ∩ G| / |P| and recall |P ∩ G| / |G| (0 for an empty denominator)."""
    hit = np.count_nonzero(predicted & truth)
    p, g = np.count_nonzero(predicted), np.count_nonzero(truth)
    return (hit / p if p else 0.0), (hit / g if g else 0.0)


def background_fraction(image: np.ndarray, threshold: float, seen: np.ndarray | None = None) -> float:
    """Func-IoU of one token: IoU of (map < b) with the all-background truth = fraction below b
    (of the seen pixels, when `seen` is given)."""
    if seen is None:
        return float(np.count_nonzero(image < threshold)) / image.size
    count = np.count_nonzero(seen)
    return float(np.count_nonzero((image < threshold) & seen)) / count if count else 0.0


@dataclass(frozen=True)
class Word:
    """One answer word: its text, answer-token indices, class (pos.NOUN / FUNCTION / OTHER)
    and the category it matches (nouns only; None if none)."""

    text: str
    tokens: tuple[int, ...]
    kind: str
    category: str | None = None


@dataclass
class ObjectScore:
    """An Obj-IoU entry: one noun, or a run of consecutive nouns of one category."""

    sample: str
    words: str
    category: str
    iou: float
    precision: float
    recall: float
    token: int


@dataclass
class FunctionScore:
    """A Func-IoU entry: one function word."""

    sample: str
    word: str
    score: float
    threshold: float


@dataclass
class AnswerScores:
    """The entries of one answer; `no_threshold`: function words skipped (no noun in the answer)."""

    objects: list[ObjectScore] = field(default_factory=list)
    functions: list[FunctionScore] = field(default_factory=list)
    no_threshold: int = 0


def match_category(word: str, categories: Mapping[str, set[str]]) -> str | None:
    """The first category (in the given order) with a word whose lemma equals the word's lemma."""
    key = lemma(word)
    for name, lemmas in categories.items():
        if key in lemmas:
            return name
    return None


def object_groups(words: Sequence[Word]) -> list[list[Word]]:
    """Matched nouns, consecutive words of one category merged into one group."""
    groups: list[list[Word]] = []
    previous: Word | None = None
    for word in words:
        matched = word.kind == NOUN and word.category is not None
        if matched and previous is not None and previous.category == word.category and groups:
            groups[-1].append(word)
        elif matched:
            groups.append([word])
        previous = word if matched else None
    return groups


def score_answer(
    sample_id: str,
    words: Sequence[Word],
    maps: np.ndarray,
    masks: Mapping[str, np.ndarray],
    seen: np.ndarray | None = None,
    threshold: float | None = None,
    grid_maps: np.ndarray | None = None,
    noun_threshold: str = "token",
) -> AnswerScores:
    """Score one answer. maps: uint8 [N, h, w] answer-token maps (resized to the mask size when
    smaller; `project_sample_maps` places them through their boxes first, or a `ProjectedMaps`
    that does so for the tokens scored only); masks: category -> bool [H, W]; seen: bool [H, W],
    the pixels the model saw (None: all).

    threshold: None for Otsu, else the fixed threshold in (0, 1) (`binarise`); grid_maps: the
    uint8 maps [N, V] on the token grid, to score function words on their cells instead of the
    mask's pixels; noun_threshold: b is the mean over noun "token"s, or over noun words of their
    tokens' largest threshold ("word-max").

    Every score is a count of pixels above or below a threshold, so each token map is read once
    into its histogram over the seen pixels (and once per category into its histogram over the
    category's mask, within the mask's bounding box): the same counts as binarising its pixels
    (`otsu`, `iou`, `precision_recall`, `background_fraction`), without a full-size temporary."""
    if noun_threshold not in ("token", "word-max"):
        raise TamxError(f"unknown noun threshold rule {noun_threshold!r}; use 'token' or 'word-max'")
    size = tuple(next(iter(masks.values())).shape if masks else maps.shape[1:])
    if seen is not None and seen.shape != size:
        raise TamxError(f"the seen mask is {seen.shape}, the masks are {size}")
    everywhere = seen is None or bool(seen.all())
    seen_count = size[0] * size[1] if seen is None else int(np.count_nonzero(seen))
    seen_mask = None if everywhere else seen.view(np.uint8)
    resized: dict[int, np.ndarray] = {}
    histograms: dict[int, np.ndarray] = {}
    thresholds: dict[int, float] = {}

    def token_map(t: int) -> np.ndarray:
        if t not in resized:
            grid = maps[t]
            resized[t] = grid if grid.shape == size and grid.dtype == np.uint8 else resize_map(grid, size)
        return resized[t]

    def token_histogram(t: int) -> np.ndarray:
        if t not in histograms:
            histograms[t] = _histogram(token_map(t), seen_mask)
        return histograms[t]

    def token_threshold(t: int) -> float:
        if t not in thresholds:
            if threshold is not None:
                thresholds[t] = 255.0 * threshold
            elif seen_count == 0:
                thresholds[t] = 255.0  # as `otsu`: nothing seen, nothing above
            else:
                thresholds[t] = _otsu_of_histogram(token_histogram(t), lambda: token_map(t), seen)
        return thresholds[t]

    def foreground(t: int) -> int:  # |map > threshold| over the seen pixels
        return _above(token_histogram(t), token_threshold(t))

    result = AnswerScores()
    if noun_threshold == "token":
        noun_thresholds = [token_threshold(t) for w in words if w.kind == NOUN for t in w.tokens]
    else:
        noun_thresholds = [max(token_threshold(t) for t in w.tokens) for w in words if w.kind == NOUN and w.tokens]
    for group in object_groups(words):
        truth = masks[group[0].category] if seen is None else masks[group[0].category] & seen
        rows, cols = _bounding_box(truth)
        truth_mask = truth[rows, cols].view(np.uint8)
        truth_count = int(np.count_nonzero(truth_mask))
        counts: dict[int, tuple[int, int]] = {}  # token -> (|P|, |P and G|)
        for t in (t for w in group for t in w.tokens):
            if t not in counts:
                inside = _histogram(token_map(t)[rows, cols], truth_mask)
                counts[t] = (foreground(t), _above(inside, token_threshold(t)))
        ious = {t: _count_iou(p, hit, truth_count) for t, (p, hit) in counts.items()}
        best = max((t for w in group for t in w.tokens), key=ious.__getitem__)
        p, hit = counts[best]
        result.objects.append(
            ObjectScore(
                sample_id, " ".join(w.text for w in group), group[0].category, ious[best],
                hit / p if p else 0.0, hit / truth_count if truth_count else 0.0, best,
            )
        )  # fmt: skip
    functions = [w for w in words if w.kind == FUNCTION]
    if functions and not noun_thresholds:
        result.no_threshold = len(functions)
        return result
    if functions:
        b = float(np.mean(noun_thresholds))
        for word in functions:
            if grid_maps is None:
                fractions = [_below(token_histogram(t), b) / seen_count if seen_count else 0.0 for t in word.tokens]
            else:
                fractions = [background_fraction(grid_maps[t], b) for t in word.tokens]
            score = float(np.mean(fractions))
            result.functions.append(FunctionScore(sample_id, word.text, score, b))
    return result


def _count_iou(predicted: int, hit: int, truth: int) -> float:
    """`iou` from counts: |P|, |P and G| and |G| (0 when both masks are empty)."""
    union = predicted + truth - hit
    return hit / union if union else 0.0


_EVERY_PIXEL = np.zeros((0, 0), dtype=np.uint8)


def _histogram(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """int64 [256] counts of a uint8 image's values (where the uint8 `mask` is non-zero)."""
    from .histogram_kernels import histogram

    return histogram(image, _EVERY_PIXEL if mask is None else mask)


def _above(histogram: np.ndarray, threshold: float) -> int:
    """How many values lie above `threshold` (a float in 0..255)."""
    return int(histogram[int(np.floor(threshold)) + 1 :].sum())


def _below(histogram: np.ndarray, threshold: float) -> int:
    """How many values lie below `threshold` (a float in 0..255)."""
    return int(histogram[: int(np.ceil(threshold))].sum())


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns of a bool mask's True pixels (empty slices for an empty mask)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


# A histogram's Otsu threshold is taken from `tamx.histogram_kernels` when its variance beats every other
# threshold's by more than this relative margin (far above the rounding of either computation);
# closer calls are OpenCV's (`otsu`), whose IPP kernel rounds differently.
_OTSU_MARGIN = 1e-6


def _otsu_of_histogram(histogram: np.ndarray, image, seen: np.ndarray | None) -> float:
    """`otsu(image(), seen)[0]` from the image's histogram over the seen pixels (total > 0)."""
    from .histogram_kernels import otsu_histogram

    value, best, second = otsu_histogram(histogram)
    if best > 0.0 and best - second > _OTSU_MARGIN * best:
        return value
    return otsu(image(), seen)[0]


@dataclass
class Summary:
    """Dataset means of one variant (fractions, not %), with the entry counts."""

    obj_iou: float
    func_iou: float
    f1_iou: float
    precision: float
    recall: float
    objects: int
    functions: int

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def f1(obj: float, func: float) -> float:
    """F1-IoU = 2 * Obj * Func / (Obj + Func), 0 when both are 0."""
    return 2 * obj * func / (obj + func) if obj + func > 0 else 0.0


def summarise(objects: Sequence[ObjectScore], functions: Sequence[FunctionScore]) -> Summary:
    """Means over every entry of the dataset."""

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else 0.0

    obj = mean([o.iou for o in objects])
    func = mean([f.score for f in functions])
    return Summary(
        obj_iou=obj,
        func_iou=func,
        f1_iou=f1(obj, func),
        precision=mean([o.precision for o in objects]),
        recall=mean([o.recall for o in objects]),
        objects=len(objects),
        functions=len(functions),
    )


def first_prompt_map(
    sample: Sample, settings: ExplainSettings, token_class: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The first-token substitute: the map of the first prompt token, Eq. 1 without ECI.

    Its class is the token's own id (docs/method.md; the authors' code takes the greedy
    prediction there, which needs the whole LM head), or `token_class` when given. Cells of
    blocks after the token are 0, and the variant's filter is applied as to every map.
    Returns (before filter, after) [V].
    """
    q0 = int(sample.context_positions[0])
    token = sample.input_ids[q0 : q0 + 1] if token_class is None else np.array([token_class], dtype=np.int64)
    rows, bias = sample.lm_head.weights(token)
    hidden, _ = decode_hidden(sample, vision_positions(sample.vision_blocks))
    cam = activation_maps(hidden, rows, bias)[:, 0]
    cam = np.where(cell_block_starts(sample.vision_blocks) < q0, cam, 0.0).astype(np.float32)
    final = filter_maps(cam[None], frame_table(sample.vision_blocks), settings.filter, settings.kernel_size)[0]
    return cam, np.maximum(final, 0.0)


def greedy_first_class(sample: Sample) -> int:
    """The class the first prompt token's hidden state scores highest among the LM-head rows the
    sample stores (its context, answer and candidate ids): the greedy prediction there whenever
    that token's row is stored."""
    q0 = int(sample.context_positions[0])
    hidden, _ = decode_hidden(sample, np.array([q0], dtype=np.int64))
    rows, bias = sample.lm_head.weights(sample.lm_head.ids)
    return int(sample.lm_head.ids[int(np.argmax(class_logits(hidden, rows, bias)[0]))])


def first_token_map(sample: Sample, settings: ExplainSettings, protocol: Protocol = PROTOCOLS["tamx"]) -> np.ndarray:
    """The quantised (uint8 [V]) substitute for the first answer token's map under `protocol`:
    "own" class normalised alone, or the "greedy" class normalised with its scores at every
    context position (raw, as the authors' code does)."""
    if protocol.first_token == "own":
        before, after = first_prompt_map(sample, settings)
        return quantise_maps(after[None], before[None])[0]
    if protocol.first_token != "greedy":
        raise TamxError(f"unknown first-token rule {protocol.first_token!r}; use 'own' or 'greedy'")
    token_class = greedy_first_class(sample)
    before, after = first_prompt_map(sample, settings, token_class)
    scores = text_scores(sample, np.array([token_class]), sample.context_positions)
    return quantise_maps(after[None], before[None], scores)[0]


def quantise_sample_maps(sample: Sample, maps, protocol: Protocol = PROTOCOLS["tamx"], first_token: bool = True):
    """A variant's answer maps (`tamx.records.Maps`) of `sample` quantised to uint8 [N, V] under
    `protocol`, the first answer token's map replaced by the substitute when `first_token`."""
    if protocol.stored_normaliser():
        relevance = np.concatenate(
            [maps.text_relevance, maps.answer_relevance if maps.answer_relevance is not None else maps.cam[:, :0]],
            axis=1,
        )
        quantised = quantise_maps(maps.final, maps.eci, relevance)
    else:
        quantised = quantise_span(maps.final, *normaliser_span(sample, maps.eci, protocol))
    if first_token and len(quantised):
        quantised[0] = first_token_map(sample, ExplainSettings.from_json(maps.settings), protocol)
    return quantised
