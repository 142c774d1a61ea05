"""Where things sit in a sample's token sequence: vision cells, frames, the context pool."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .records import VisionBlock


def vision_positions(blocks: Sequence[VisionBlock]) -> np.ndarray:
    """Sequence positions of every vision cell, blocks concatenated in order: [V] int64."""
    if not blocks:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([b.positions() for b in blocks])


def cell_block_starts(blocks: Sequence[VisionBlock]) -> np.ndarray:
    """For every vision cell, the start position of its block: [V] int64."""
    if not blocks:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.full(b.size, b.start, dtype=np.int64) for b in blocks])


def media_groups(blocks: Sequence[VisionBlock]) -> np.ndarray:
    """For every vision cell, its image or video: 0..G-1 in order of first appearance, [V] int64.

    Tiles, crops and the thumbnail of one image, and every slice of one video, share a group:
    ECI solves one scale per group (docs/method.md, Eq. 5)."""
    keys: dict[tuple[str, int], int] = {}
    parts = [np.full(b.size, keys.setdefault((b.kind, b.media), len(keys)), dtype=np.int64) for b in blocks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def frame_table(blocks: Sequence[VisionBlock]) -> np.ndarray:
    """One row (offset into the map, H, W) per grid of `map_frames` (image, tile, crop, video
    slice): [F, 3]. Filters run on each row alone, so they never cross a tile seam or a frame."""
    rows = [(f.offset, f.height, f.width) for f in map_frames(blocks)]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


@dataclass(frozen=True)
class MapFrame:
    """Where one 2-D slice of a map is drawn: the contract between the store and every
    consumer that draws or scores maps (report, figures, eval, serve).

    offset: first cell of the slice in the map vector [V]; height, width: the slice's grid;
    block: index into `sample.vision_blocks`; kind / media: which image or video it shows
    (`media` indexes the sample's items of that kind, as `VisionBlock.media`);
    frame: the first source video frame of the slice (None for images);
    box: (x0, y0, x1, y1) outer edges of the grid in source pixels of that image or frame,
    may extend past the image where the processor padded; None when the geometry is not
    recorded (then the grid is assumed to cover the whole image);
    label: a short name for people ("image", "tile 1,2", "thumbnail", "t=1.5s");
    image_size: (width, height) of the source image or frame in pixels, None when not
    recorded (then the box, if any, is in the pixels of whatever the image is);
    time: the timestamp in seconds of `frame` (None for images or when not recorded).
    """

    offset: int
    height: int
    width: int
    block: int
    kind: str
    media: int
    frame: int | None = None
    box: tuple[float, float, float, float] | None = None
    label: str = ""
    image_size: tuple[int, int] | None = None
    time: float | None = None

    @property
    def size(self) -> int:
        return self.height * self.width


def map_frames(blocks: Sequence[VisionBlock]) -> list[MapFrame]:
    """One MapFrame per grid slice (image, tile, crop, thumbnail, video slice), in map order."""
    out = []
    offset = 0
    for index, block in enumerate(blocks):
        t, h, w = block.grid
        parts = [
            (n, m, box, f"tile {k + 1}") for k, ((_r, _c, n, m), box) in enumerate(zip(block.tiles, block.tile_boxes))
        ]
        for slice_ in range(t):
            frames = block.frames[slice_] if block.frames else ()
            times = block.times[slice_] if block.times else ()
            if block.kind == "image":
                label = block.label or "image"
            else:
                label = f"t={times[0]:.2f}s" if times else f"slice {slice_}"
                label = f"{block.label} {label}" if block.label else label
            for height, width, box, part in parts or [(h, w, block.box, "")]:
                out.append(
                    MapFrame(
                        offset=offset,
                        height=height,
                        width=width,
                        block=index,
                        kind=block.kind,
                        media=block.media,
                        frame=frames[0] if frames else None,
                        box=box,
                        label=f"{label} {part}" if part else label,
                        image_size=block.image_size,
                        time=times[0] if times else None,
                    )
                )
                offset += height * width
    return out


def grid_boxes(blocks: Sequence[VisionBlock]) -> tuple[np.ndarray, np.ndarray]:
    """The interchange geometry: one row per mapped grid (a block, or each tile of a tiled block),
    boxes [G, 4] float64 (x0, y0, x1, y1; NaN where not recorded) and their blocks [G] int64."""
    boxes, owners = [], []
    for index, block in enumerate(blocks):
        for box in block.tile_boxes or (block.box,):
            boxes.append((np.nan,) * 4 if box is None else box)
            owners.append(index)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(owners, dtype=np.int64)


def with_grid_boxes(blocks: Sequence[VisionBlock], boxes: np.ndarray, owners: np.ndarray) -> list[VisionBlock]:
    """`blocks` with the boxes of `grid_boxes`' tensors (NaN rows: not recorded, whole image assumed)."""
    boxes, owners = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(owners, np.int64).reshape(-1)
    if len(boxes) != len(owners) or (len(owners) and (owners.min() < 0 or owners.max() >= len(blocks))):
        raise ValueError(f"{len(boxes)} vision_boxes for {len(owners)} vision_grid_blocks of {len(blocks)} blocks")
    out = []
    for index, block in enumerate(blocks):
        rows = [None if np.isnan(b).any() else tuple(float(x) for x in b) for b in boxes[owners == index]]
        if block.tiles:
            if len(rows) != len(block.tiles) or None in rows:
                raise ValueError(f"vision block {index} has {len(block.tiles)} tiles but {len(rows)} boxes")
            out.append(dataclasses.replace(block, tile_boxes=tuple(rows)))
        elif len(rows) == 1:
            out.append(dataclasses.replace(block, box=rows[0]))
        else:
            raise ValueError(f"vision block {index} is one grid but has {len(rows)} boxes")
    return out


def context_pool(context_positions: np.ndarray, answer_positions: np.ndarray) -> np.ndarray:
    """Positions that can be context for some token: the prompt text and every answer token
    but the last (whose hidden state may not exist). Sorted, unique: [Q] int64."""
    return np.union1d(context_positions, answer_positions[:-1]).astype(np.int64)
