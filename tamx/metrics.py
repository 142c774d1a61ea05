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
from .geometry import frame_groups, project_maps
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


def project_sample_maps(sample: Sample, maps: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Answer-token maps [N, V] (uint8) of a one-image sample projected onto size = (H, W) pixels
    through the grids' boxes (tiles and thumbnail averaged where they overlap, `project_frames`):
    (maps [N, H, W], seen [H, W] bool)."""
    frames = map_frames(sample.vision_blocks)
    groups = frame_groups(frames)
    if len(groups) != 1 or groups[0][0].kind != "image":
        shown = "; ".join(f"{b.kind} {b.grid}" for b in sample.vision_blocks) or "none"
        raise TamxError(f"sample {sample.id!r}: eval scores samples with one image, this one has {shown}")
    return project_maps(maps, groups[0], size)


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
    smaller; `project_sample_maps` places them through their boxes first); masks: category ->
    bool [H, W]; seen: bool [H, W], the pixels the model saw (None: all).

    threshold: None for Otsu, else the fixed threshold in (0, 1) (`binarise`); grid_maps: the
    uint8 maps [N, V] on the token grid, to score function words on their cells instead of the
    mask's pixels; noun_threshold: b is the mean over noun "token"s, or over noun words of their
    tokens' largest threshold ("word-max")."""
    size = next(iter(masks.values())).shape if masks else maps.shape[1:]
    if seen is not None and seen.shape != tuple(size):
        raise TamxError(f"the seen mask is {seen.shape}, the masks are {tuple(size)}")
    resized: dict[int, np.ndarray] = {}
    binary: dict[int, tuple[float, np.ndarray]] = {}

    def token_map(t: int) -> np.ndarray:
        if t not in resized:
            resized[t] = resize_map(maps[t], size)
        return resized[t]

    def token_otsu(t: int) -> tuple[float, np.ndarray]:
        if t not in binary:
            binary[t] = binarise(token_map(t), seen, threshold)
        return binary[t]

    result = AnswerScores()
    if noun_threshold == "token":
        noun_thresholds = [token_otsu(t)[0] for w in words if w.kind == NOUN for t in w.tokens]
    elif noun_threshold == "word-max":
        noun_thresholds = [max(token_otsu(t)[0] for t in w.tokens) for w in words if w.kind == NOUN and w.tokens]
    else:
        raise TamxError(f"unknown noun threshold rule {noun_threshold!r}; use 'token' or 'word-max'")
    for group in object_groups(words):
        truth = masks[group[0].category] if seen is None else masks[group[0].category] & seen
        best = max((t for w in group for t in w.tokens), key=lambda t: iou(token_otsu(t)[1], truth))
        predicted = token_otsu(best)[1]
        p, r = precision_recall(predicted, truth)
        result.objects.append(
            ObjectScore(
                sample_id, " ".join(w.text for w in group), group[0].category, iou(predicted, truth), p, r, best
            )
        )
    functions = [w for w in words if w.kind == FUNCTION]
    if functions and not noun_thresholds:
        result.no_threshold = len(functions)
        return result
    if functions:
        b = float(np.mean(noun_thresholds))
        for word in functions:
            if grid_maps is None:
                fractions = [background_fraction(token_map(t), b, seen) for t in word.tokens]
            else:
                fractions = [background_fraction(grid_maps[t], b) for t in word.tokens]
            score = float(np.mean(fractions))
            result.functions.append(FunctionScore(sample_id, word.text, score, b))
    return result


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
