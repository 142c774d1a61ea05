"""The metrics of `tamx eval`, one registry (`EVAL_METRICS`: name -> `EvalMetric`) the eval stage
loops over (docs/eval.md).

A metric scores the answer maps of one variant of one sample (a `MapContext`) into that
sample's entries, and summarises a variant's entries of every sample into columns of
summary.csv and keys of summary.json. Metrics run in registry order; each sees the entries
of the ones before it for the same sample and variant (pointing points at the nouns the IoU
metric matched). Adding a metric: a score function, a summary function and a line in
`EVAL_METRICS`; the stage, summary.csv and summary.json pick it up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .errors import TamxError
from .layout import map_frames
from .metrics import PROTOCOLS, AnswerScores, Protocol, Word, score_answer, summarise
from .pointing import point_answer, summarise_points
from .records import Sample


@dataclass(frozen=True)
class MapContext:
    """What a metric sees of one variant of one sample: its answer words, the answer maps
    quantised on the token grid [N, V] uint8 and projected onto the masks' pixels [N, H, W]
    (`seen` [H, W]: the pixels a grid covers), the masks (category -> [H, W] bool), the word
    classes of pointing, the protocol and threshold, and the entries of earlier metrics."""

    sample_id: str
    sample: Sample
    words: Sequence[Word]
    quantised: np.ndarray
    projected: np.ndarray
    seen: np.ndarray
    masks: Mapping[str, np.ndarray]
    classes: Mapping[str, str] = field(default_factory=dict)
    protocol: Protocol = PROTOCOLS["tamx"]
    threshold: float | None = None
    earlier: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalMetric:
    """A registered metric. score: MapContext -> this sample's entries (any value; the stage
    keeps one per sample); columns: the entries of every sample of a variant -> summary.csv
    columns (name -> number); to_json: the same -> summary.json keys (default: the columns)."""

    score: Callable[[MapContext], Any]
    columns: Callable[[Sequence[Any]], dict[str, float | int]]
    to_json: Callable[[Sequence[Any]], dict[str, Any]] | None = None

    def summary_json(self, entries: Sequence[Any]) -> dict[str, Any]:
        return (self.to_json or self.columns)(entries)


def _iou(context: MapContext) -> AnswerScores:
    grid = context.quantised if context.protocol.func_on == "grid" else None
    return score_answer(
        context.sample_id, context.words, context.projected, dict(context.masks), context.seen,
        context.threshold, grid, context.protocol.noun_threshold,
    )  # fmt: skip


def _iou_summary(entries: Sequence[AnswerScores]):
    return summarise([o for e in entries for o in e.objects], [f for e in entries for f in e.functions])


def _pointing(context: MapContext) -> list:
    objects = context.earlier["iou"].objects
    frames = map_frames(context.sample.vision_blocks)
    return point_answer(
        context.sample_id, objects, context.quantised, frames, dict(context.masks), dict(context.classes)
    )


def _pointing_summary(entries: Sequence[list]):
    return summarise_points([p for e in entries for p in e])


# name -> EvalMetric, in the order they run and their columns appear.
EVAL_METRICS: dict[str, EvalMetric] = {
    "iou": EvalMetric(_iou, lambda e: asdict(_iou_summary(e)), lambda e: _iou_summary(e).to_json()),
    "pointing": EvalMetric(
        _pointing,
        lambda e: {"pointing": (s := _pointing_summary(e)).pointing, "pointing_chance": s.chance},
        lambda e: {"pointing": _pointing_summary(e).to_json()},
    ),
}


def check_context(context: MapContext) -> MapContext:
    """`context` if its arrays agree (one quantised and one projected map per answer token,
    masks and `seen` of the projected maps' size), else a TamxError saying which do not."""
    n = len(context.sample.answer_positions)
    quantised, seen = np.asarray(context.quantised), np.asarray(context.seen)
    # a ProjectedMaps (tamx.metrics) tells its shape without projecting every map
    shape = tuple(getattr(context.projected, "shape", None) or np.shape(context.projected))
    if quantised.ndim != 2 or len(quantised) != n or len(shape) != 3 or shape[0] != n:
        raise TamxError(
            f"sample {context.sample_id!r}: eval needs one quantised [N, V] and one projected [N, H, W] map per "
            f"answer token (N = {n}), got {quantised.shape} and {shape}"
        )
    size = shape[1:]
    wrong = [name for name, mask in context.masks.items() if np.shape(mask) != size]
    if seen.shape != size or wrong:
        raise TamxError(
            f"sample {context.sample_id!r}: the masks ({', '.join(wrong) or 'seen'}) are not of the maps' "
            f"projected size {size}; project the maps onto the masks' pixels"
        )
    return context


def score_metrics(context: MapContext, last: str | None = None) -> dict[str, Any]:
    """Every registered metric's entries for one variant of one sample, in registry order
    (up to metric `last` when given); a TamxError for arrays that do not agree or an unknown `last`."""
    if last is not None and last not in EVAL_METRICS:
        raise TamxError(f"unknown eval metric {last!r}; use one of {', '.join(EVAL_METRICS)}")
    check_context(context)
    scored: dict[str, Any] = {}
    for name, metric in EVAL_METRICS.items():
        scored[name] = metric.score(replace(context, earlier=dict(scored)))
        if name == last:
            break
    return scored
