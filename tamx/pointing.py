"""Pointing accuracy: does a word's map peak on the word's object? With its chance baseline.

A map points at an object when its peak cell lies on the object's mask: the mask covers at
least `COVER` of the cell's footprint in the image (a cell is a patch of source pixels, given
by `tamx.layout.map_frames`: the frame's `box`, or the whole image when none is recorded).
When several cells share the peak value, the hit is the share of them that lie on the object
(the expected hit of breaking the tie at random), so a constant map scores exactly chance.
Chance is the share of all cells that lie on the object: the hit rate of a peak drawn
uniformly over the cells.

Each Obj-IoU entry is scored on the same token's map as its IoU (`ObjectScore.token`), and is
counted under its word class: the class the dataset gives its category in an optional
`word_classes.json` ({category: class}, for example {"red": "colour", "circle": "shape"}) in
the dataset folder, else "object".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import TamxError
from .layout import MapFrame
from .metrics import ObjectScore

COVER = 0.25
DEFAULT_CLASS = "object"
WORD_CLASSES_FILE = "word_classes.json"


@dataclass
class PointScore:
    """One object word's pointing: hit in [0, 1] (a share when the peak is tied), chance in [0, 1]."""

    sample: str
    words: str
    category: str
    word_class: str
    hit: float
    chance: float


def cell_cover(mask: np.ndarray, frames: Sequence[MapFrame]) -> np.ndarray:
    """The share of each map cell [V] that `mask` [H, W] covers, cell footprints from the frames' boxes.

    A cell's part outside the image counts as not covered.
    """
    height, width = mask.shape
    summed = cv2.integral(np.ascontiguousarray(mask, dtype=np.uint8))
    out = np.zeros(sum(f.size for f in frames), np.float64)
    for f in frames:
        x0, y0, x1, y1 = f.box if f.box is not None else (0.0, 0.0, float(width), float(height))
        xs = np.linspace(x0, x1, f.width + 1)
        ys = np.linspace(y0, y1, f.height + 1)
        area = np.outer(np.diff(ys), np.diff(xs))
        xi = np.clip(np.round(xs), 0, width).astype(np.int64)
        yi = np.clip(np.round(ys), 0, height).astype(np.int64)
        inside = summed[yi[1:, None], xi[None, 1:]] - summed[yi[:-1, None], xi[None, 1:]]
        inside = inside - summed[yi[1:, None], xi[None, :-1]] + summed[yi[:-1, None], xi[None, :-1]]
        out[f.offset : f.offset + f.size] = (inside / np.where(area > 0, area, np.inf)).ravel()
    return out


def point_hit(values: np.ndarray, on_object: np.ndarray) -> float:
    """Share of the peak cells of `values` [V] that are on the object (`on_object` [V] bool)."""
    values = np.asarray(values)
    peaks = values == values.max()
    return float(on_object[peaks].mean())


def point_answer(
    sample_id: str,
    objects: Sequence[ObjectScore],
    maps: np.ndarray,
    frames: Sequence[MapFrame],
    masks: Mapping[str, np.ndarray],
    classes: Mapping[str, str],
) -> list[PointScore]:
    """Pointing of every Obj-IoU entry of one answer. maps: [N, V] answer-token maps (map order of `frames`)."""
    covers: dict[str, np.ndarray] = {}
    scores = []
    for entry in objects:
        if entry.category not in covers:
            covers[entry.category] = cell_cover(masks[entry.category], frames) >= COVER
        on_object = covers[entry.category]
        scores.append(
            PointScore(
                sample=sample_id,
                words=entry.words,
                category=entry.category,
                word_class=classes.get(entry.category, DEFAULT_CLASS),
                hit=point_hit(maps[entry.token], on_object),
                chance=float(on_object.mean()),
            )
        )
    return scores


def read_word_classes(data_dir: str | Path) -> dict[str, str]:
    """The dataset's {category: word class} from `word_classes.json` in its folder ({} when absent)."""
    path = Path(data_dir) / WORD_CLASSES_FILE
    if not path.is_file():
        return {}
    try:
        classes = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TamxError(f"{path} is not valid JSON ({exc}); it maps category names to word classes") from None
    if not isinstance(classes, dict) or not all(isinstance(v, str) for v in classes.values()):
        raise TamxError(f'{path} must map category names to class names, e.g. {{"red": "colour"}}')
    return {str(k): v for k, v in classes.items()}


@dataclass
class PointSummary:
    """Mean pointing and chance over entries, and the number of entries."""

    pointing: float
    chance: float
    count: int

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def summarise_points(points: Sequence[PointScore]) -> PointSummary:
    """Means over every entry (NaN when there is none)."""
    if not points:
        return PointSummary(float("nan"), float("nan"), 0)
    return PointSummary(
        float(np.mean([p.hit for p in points])), float(np.mean([p.chance for p in points])), len(points)
    )
