"""Obj-IoU, Func-IoU and F1-IoU (Sec. 3.4, Supp. E; docs/method.md "Evaluation"), torch-free.

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

from .activation import activation_maps
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
) -> AnswerScores:
    """Score one answer. maps: uint8 [N, h, w] answer-token maps (resized to the mask size when
    smaller; `project_sample_maps` places them through their boxes first); masks: category ->
    bool [H, W]; seen: bool [H, W], the pixels the model saw (None: all)."""
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
            binary[t] = otsu(token_map(t), seen)
        return binary[t]

    result = AnswerScores()
    noun_thresholds = [token_otsu(t)[0] for w in words if w.kind == NOUN for t in w.tokens]
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
            score = float(np.mean([background_fraction(token_map(t), b, seen) for t in word.tokens]))
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


def first_prompt_map(sample: Sample, settings: ExplainSettings) -> tuple[np.ndarray, np.ndarray]:
    """The first-token substitute: the map of the first prompt token, Eq. 1 without ECI.

    Its class is the token's own id (docs/method.md; the authors' code takes the greedy
    prediction there, which needs the whole LM head). Cells of blocks after the token are 0,
    and the variant's filter is applied as to every map. Returns (before filter, after) [V].
    """
    q0 = int(sample.context_positions[0])
    token = sample.input_ids[q0 : q0 + 1]
    rows, bias = sample.lm_head.weights(token)
    hidden, _ = decode_hidden(sample, vision_positions(sample.vision_blocks))
    cam = activation_maps(hidden, rows, bias)[:, 0]
    cam = np.where(cell_block_starts(sample.vision_blocks) < q0, cam, 0.0).astype(np.float32)
    final = filter_maps(cam[None], frame_table(sample.vision_blocks), settings.filter, settings.kernel_size)[0]
    return cam, np.maximum(final, 0.0)
