"""Faithfulness of a map: deletion and insertion curves (docs/faithfulness.md), torch-free parts.

The model side (`tamx faithfulness`, pipeline/faithfulness) perturbs the image along an order
of the map's cells and records the explained token's probability; this module holds what
needs no model: where each cell lies on its image (`cell_regions`), the orders (`cell_order`),
the per-pixel rank that turns an order into perturbed images (`rank_image`, `step_images`),
the areas under the curves (`auc`), and the stored record (`Faithfulness`, its field table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import SampleError
from .fields import array, check_arrays, check_json, json_field
from .layout import map_frames
from .records import VisionBlock

# The fields of a faithfulness record (samples/<id>/faithfulness/<variant>): T explained answer
# tokens, S fractions 0, 1/steps, ..., 1 of the seen cells perturbed.
FAITHFULNESS_FIELDS = (
    json_field("settings", dict, since=(2, 1)),
    json_field("maps_token", str, required=False, since=(2, 1)),  # the maps commit the orders came from
    array("tokens", "int64", ("T",)),  # answer-token indices (into answer_positions)
    array("fractions", "float32", ("S",)),
    array("full", "float32", ("T",)),  # p on the unperturbed image(s)
    array("baseline", "float32", ("T",)),  # p with every seen cell replaced by the baseline
    array("deletion", "float32", ("T", "S")),
    array("insertion", "float32", ("T", "S")),
    array("random_deletion", "float32", ("T", "S")),  # mean over the random orders
    array("random_insertion", "float32", ("T", "S")),
    array("mask_deletion", "float32", ("T", "S"), required=False),  # NaN rows: the token has no mask
    array("mask_insertion", "float32", ("T", "S"), required=False),
)
FAITHFULNESS_ARRAYS = tuple(f.name for f in FAITHFULNESS_FIELDS if f.kind == "array")
CURVES = ("deletion", "insertion", "random_deletion", "random_insertion", "mask_deletion", "mask_insertion")
BASELINES = ("blur", "mean", "zero")  # what replaces a removed cell's pixels (`tamx faithfulness --baseline`)
WORDS = ("content", "all")  # the answer tokens explained (`tamx faithfulness --words`)


@dataclass
class Faithfulness:
    """Deletion and insertion curves of one variant of one sample (float32 probabilities).

    tokens: [T] answer-token indices; fractions: [S] the share of seen cells perturbed at each
    step; full / baseline: [T] p on the unperturbed image and with every seen cell replaced;
    deletion / insertion: [T, S] p along the variant's order; random_*: the mean of the random
    orders; mask_*: the ground-truth mask as the map (None without a dataset; NaN rows for
    tokens without a mask). settings: steps, baseline, random orders, seed, words, model.
    """

    variant: str
    settings: dict[str, Any]
    tokens: np.ndarray
    fractions: np.ndarray
    full: np.ndarray
    baseline: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray
    mask_deletion: np.ndarray | None = None
    mask_insertion: np.ndarray | None = None
    maps_token: str | None = None

    def __repr__(self) -> str:
        return f"Faithfulness({self.variant!r}, {len(self.tokens)} tokens x {len(self.fractions)} steps)"

    def values(self) -> dict[str, Any]:
        """Field name -> value for FAITHFULNESS_FIELDS."""
        values: dict[str, Any] = {"settings": self.settings, "maps_token": self.maps_token}
        for name in FAITHFULNESS_ARRAYS:
            value = getattr(self, name)
            if value is not None:
                values[name] = np.asarray(value, dtype=np.int64 if name == "tokens" else np.float32)
        return values

    @classmethod
    def from_values(cls, variant: str, values: dict[str, Any], sample_id: str, answers: int) -> Faithfulness:
        """A record from field values, checked against FAITHFULNESS_FIELDS and the sample's N answers."""

        def fail(name: str, problem: str) -> None:
            raise SampleError(sample_id, f"faithfulness/{variant}/{name}", problem)

        check_json(FAITHFULNESS_FIELDS, values, fail, "faithfulness record")
        check_arrays(FAITHFULNESS_FIELDS, values, fail)
        tokens = values["tokens"]
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= answers):
            fail("tokens", f"answer-token indices must lie in [0, {answers}); compute them again with --overwrite")
        return cls(
            variant=variant,
            settings=values["settings"],
            maps_token=values.get("maps_token"),
            **{name: values.get(name) for name in FAITHFULNESS_ARRAYS},
        )

    def validate(self, sample_id: str, answers: int) -> None:
        Faithfulness.from_values(self.variant, self.values(), sample_id, answers)

    def aucs(self) -> dict[str, np.ndarray]:
        """Per token [T]: the area under every stored curve (trapezoid over the fractions), and the
        normalised ones: deletion / p(0) and insertion / p(unperturbed) (`*_norm`)."""
        out = {}
        for name in CURVES:
            curve = getattr(self, name)
            if curve is None:
                continue
            out[name] = auc(curve, self.fractions)
            out[f"{name}_norm"] = out[name] / np.where(self.full > 0, self.full, np.nan)
        return out


def stored_records(run: Any, sample_id: str, variants: Sequence[str]) -> dict[str, Faithfulness]:
    """The faithfulness records of a sample's `variants` stored in `run` (a `tamx.Run`), by variant;
    variants without one are left out (the report pages draw what is there)."""
    have = set(run.faithfulness_variants(sample_id))
    return {v: run.faithfulness(sample_id, v) for v in variants if v in have}


def auc(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Trapezoid area under each curve [..., S] over `fractions` [S]: [...] float64."""
    y = np.asarray(curves, np.float64)
    x = np.asarray(fractions, np.float64)
    return ((y[..., 1:] + y[..., :-1]) * np.diff(x) / 2).sum(axis=-1)


def fractions(steps: int) -> np.ndarray:
    """0, 1/steps, ..., 1: [steps + 1] float32."""
    return (np.arange(steps + 1) / steps).astype(np.float32)


def step_counts(cells: int, steps: int) -> np.ndarray:
    """How many of `cells` ordered cells each step perturbs: round(j / steps * cells), [steps + 1]."""
    return np.round(np.arange(steps + 1) / steps * cells).astype(np.int64)


@dataclass(frozen=True)
class CellRegions:
    """Where each map cell [V] lies: its pixel box [V, 4] (x0, y0, x1, y1, clipped) on the images
    `item` .. `item + count - 1` (indices into `items`; item -1: the cell covers no pixel of its
    image, padding only). An image's cells cover one image (count 1); a video slice's cells cover
    every sampled frame the slice merges (Qwen2-VL's slice t: frames 2t and 2t + 1, count 2).
    `items`: the (kind, media, frame) of each image: ("image", media, None) for an image,
    ("video", media, k) for the k-th sampled frame of a video (k in sampling order, not the source
    frame index); `sizes`: their (width, height)."""

    item: np.ndarray
    boxes: np.ndarray
    items: list[tuple[str, int, int | None]]
    sizes: list[tuple[int, int]]
    count: np.ndarray | None = None

    @property
    def seen(self) -> np.ndarray:
        """The cells the model saw image content in: [V] bool."""
        return self.item >= 0

    def covers(self, cell: int) -> range:
        """The indices into `items` of the images a cell covers (empty when it is not seen)."""
        first = int(self.item[cell])
        if first < 0:
            return range(0)
        return range(first, first + (1 if self.count is None else int(self.count[cell])))


def video_slice_frames(blocks: Sequence[VisionBlock], videos: dict[int, Sequence[int]]) -> dict[tuple[int, int], range]:
    """(block index, slice) -> the positions in its video's sampled frames that the slice merges.

    videos: media index -> the source frame index of each sampled frame, in sampling order (as
    encode stores them). A video's slices, over all its blocks in order (Qwen3-VL writes one
    block per slice), share its sampled frames equally: `temporal` = frames / slices each, slice
    s taking frames s * temporal .. (s + 1) * temporal - 1. ValueError where the frames do not
    divide evenly or a slice's recorded source frames (`VisionBlock.frames`) are not those frames'.
    """
    out: dict[tuple[int, int], range] = {}
    for media in sorted({b.media for b in blocks if b.kind == "video"}):
        if media not in videos:
            raise KeyError(("video", media, None))
        sources = list(videos[media])
        slices = [(index, s) for index, b in enumerate(blocks) if b.kind == "video" and b.media == media
                  for s in range(b.grid[0])]  # fmt: skip
        if not sources or len(sources) % len(slices):
            raise ValueError(
                f"video {media} stores {len(sources)} sampled frames for {len(slices)} slices: not a whole number each"
            )
        temporal = len(sources) // len(slices)
        for n, (index, s) in enumerate(slices):
            span = range(n * temporal, (n + 1) * temporal)
            recorded = blocks[index].frames
            if recorded and s < len(recorded) and tuple(recorded[s]) != tuple(dict.fromkeys(sources[k] for k in span)):
                raise ValueError(
                    f"video {media}: slice {n} merges source frames {tuple(recorded[s])}, but its sampled frames "
                    f"{span.start}..{span.stop - 1} are {tuple(sources[k] for k in span)}"
                )
            out[(index, s)] = span
    return out


def cell_regions(
    blocks: Sequence[VisionBlock],
    sizes: dict[tuple[str, int, int | None], tuple[int, int]],
    videos: dict[int, Sequence[int]] | None = None,
) -> CellRegions:
    """Every cell's pixel box on its image(s) through the stored geometry (`tamx.layout.map_frames`).

    sizes: (kind, media, frame) -> (width, height) of each stored image, and of each sampled video
    frame as ("video", media, k) (see `CellRegions`); videos: media index -> the source frame index
    of each sampled frame of that video (`video_slice_frames`), needed where a block is a video.
    A grid without a recorded box is taken to cover its whole image. Cell edges are rounded to
    whole pixels, so the cells of one grid tile it exactly; parts past the image (padding) are
    clipped away and a cell left with no pixel is not seen (never perturbed). A video slice's
    cells lie at the same box on every frame the slice merges. KeyError(key) where `sizes` lacks
    an image or frame; ValueError where a video's frames do not match its slices.
    """
    frames = map_frames(blocks)
    spans = video_slice_frames(blocks, videos or {}) if any(b.kind == "video" for b in blocks) else {}
    total = sum(f.size for f in frames)
    item = np.full(total, -1, np.int64)
    count = np.ones(total, np.int64)
    boxes = np.zeros((total, 4), np.int64)
    items: list[tuple[str, int, int | None]] = []
    seen_of: dict[int, int] = {}  # grids of each block so far: map_frames gives a slice's tiles together
    for f in frames:
        grids = seen_of.get(f.block, 0)
        seen_of[f.block] = grids + 1
        if f.kind == "video":
            slice_ = grids // max(1, len(blocks[f.block].tiles))
            keys = [("video", f.media, k) for k in spans[(f.block, slice_)]]
        else:
            keys = [(f.kind, f.media, None)]
        for key in keys:
            if key not in sizes:
                raise KeyError(key)
        if len({sizes[k] for k in keys}) != 1:
            raise ValueError(f"the sampled frames of video {f.media} differ in size")
        width, height = sizes[keys[0]]
        if keys[0] not in items:
            items.extend(keys)
        x0, y0, x1, y1 = f.box if f.box is not None else (0.0, 0.0, float(width), float(height))
        xs = np.clip(np.round(np.linspace(x0, x1, f.width + 1)), 0, width).astype(np.int64)
        ys = np.clip(np.round(np.linspace(y0, y1, f.height + 1)), 0, height).astype(np.int64)
        cell = np.stack(np.broadcast_arrays(xs[None, :-1], ys[:-1, None], xs[None, 1:], ys[1:, None]), axis=-1).reshape(
            -1, 4
        )
        part = slice(f.offset, f.offset + f.size)
        boxes[part] = cell
        nonempty = (cell[:, 2] > cell[:, 0]) & (cell[:, 3] > cell[:, 1])
        item[part] = np.where(nonempty, items.index(keys[0]), -1)
        count[part] = len(keys)
    return CellRegions(item, boxes, items, [sizes[k] for k in items], count)


def cell_order(values: np.ndarray, seen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The seen cells from most to least relevant (`values` [V] descending, ties in a seeded
    random order): [K] cell indices, K = seen.sum()."""
    cells = np.flatnonzero(seen)
    tie = rng.permutation(len(cells))
    return cells[np.lexsort((tie, -np.asarray(values, np.float64)[cells]))]


def random_order(seen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The seen cells in a random order: [K]."""
    return rng.permutation(np.flatnonzero(seen))


def rank_images(regions: CellRegions, order: np.ndarray) -> list[np.ndarray]:
    """Per image of `regions.items`: [H, W] int64, the smallest rank in `order` of the cells covering
    each pixel (len(order) where no ordered cell does: never perturbed). Pixel p is perturbed at
    step j when rank < count_j: a pixel goes as soon as any cell that covers it goes (a tile and
    the thumbnail of one image both cover it); a video slice's cell goes on every frame it merges."""
    big = len(order)
    ranks = [np.full((h, w), big, np.int64) for w, h in regions.sizes]
    # later ranks first, so the smallest rank of a pixel is written last
    for rank in range(len(order) - 1, -1, -1):
        cell = order[rank]
        x0, y0, x1, y1 = regions.boxes[cell]
        for image in regions.covers(cell):
            ranks[image][y0:y1, x0:x1] = rank
    return ranks


def step_images(original: np.ndarray, replaced: np.ndarray, rank: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Images [len(counts), H, W, C]: step j shows `replaced` where rank < counts[j], else `original`.

    Deletion: original = the image, replaced = the baseline; insertion: original = the fully
    deleted image, replaced = the image (restoring cells in the same order)."""
    where = rank[None, :, :, None] < np.asarray(counts)[:, None, None, None]
    return np.where(where, replaced[None], original[None])
