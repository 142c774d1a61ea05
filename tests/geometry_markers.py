"""Marker geometry through the real processors: paint a marker, find its cell in pixel_values,
map that cell back through the stored box (used by tests/test_encode_geometry.py and
benchmarks/geometry_table.py).

How a family's cells sit in `pixel_values` is written here from the model code, independently
of the adapters: the adapters say where each grid lies in the source image, this module says
which pixels the model's cells are made of; the two must agree on the marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from tamx.pipeline.encode.adapters import adapter_class
from tamx.pipeline.encode.inputs import MediaItem

from tamx.geometry import cell_centre
from tamx.layout import MapFrame
from tamx.records import VisionBlock

MARKER = (255, 0, 0)
BACKGROUND = 128


def marker_image(width: int, height: int, x: float, y: float) -> np.ndarray:
    """A grey RGB image [H, W, 3] with a red square centred on pixel (x, y), about 1/40 of the short side."""
    image = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    half = max(1, round(min(width, height) / 80))
    ix, iy = int(x), int(y)
    image[max(0, iy - half) : iy + half + 1, max(0, ix - half) : ix + half + 1] = MARKER
    return image


def redness(processor):
    """A function (pixels, channel axis) -> how red each pixel is: R - (G + B) / 2 in 0..255
    after undoing the processor's normalisation, less 16, clipped at 0 (the grey background
    and black padding give 0, the marker about 240)."""
    ip = processor.image_processor
    mean, std = np.asarray(ip.image_mean, np.float64), np.asarray(ip.image_std, np.float64)

    def measure(pixels: np.ndarray, channel_axis: int) -> np.ndarray:
        moved = np.moveaxis(np.asarray(pixels, dtype=np.float64), channel_axis, 0)
        shape = (-1, *([1] * (moved.ndim - 1)))
        rgb = (moved * std.reshape(shape) + mean.reshape(shape)) * 255.0
        return np.maximum(rgb[0] - (rgb[1] + rgb[2]) / 2 - 16.0, 0.0)

    return measure


def _cells(deviation: np.ndarray, rows: int, cols: int, cell: int) -> np.ndarray:
    """Sum of deviation inside each cell x cell pixel square of a rows x cols grid (top-left origin)."""
    used = deviation[: rows * cell, : cols * cell]
    return used.reshape(rows, cell, cols, cell).sum(axis=(1, 3))


@dataclass
class Found:
    """The grid that holds the marker: its spec, the cell (row, col) and the per-cell evidence."""

    spec: VisionBlock
    row: int
    col: int
    strength: float


def _qwen_cells(processed, config, specs, red) -> list[np.ndarray]:
    merge = config.vision_config.spatial_merge_size
    pixels = processed["pixel_values"].numpy()
    out, offset = [], 0
    for t, h, w in processed["image_grid_thw"].tolist():
        count = t * h * w
        # one row per patch, patches grouped merge x merge per merged cell, row-major over cells
        patches = pixels[offset : offset + count].reshape(h // merge, w // merge, merge * merge, 3, -1)
        out.append(red(patches, 3).sum(axis=(2, 3)))
        offset += count
    return out


def _fixed_cells(processed, config, specs, red) -> list[np.ndarray]:
    """One square image per spec (LLaVA, Gemma 3, InternVL tiles): cells of equal squares of pixels."""
    pixels = processed["pixel_values"].numpy().reshape(-1, *processed["pixel_values"].shape[-3:])
    out = []
    for image, spec in zip(pixels, specs):
        _, rows, cols = spec.grid
        side = image.shape[-1]
        # LLaVA: patches row-major (CLS dropped); Gemma 3 average-pools the patches into equal squares;
        # InternVL pixel-shuffles 2 x 2 patches into one cell (row-major, see its pixel_shuffle)
        cell = config.vision_config.patch_size if config.model_type == "llava" else side // cols
        out.append(_cells(red(image, 0), rows, cols, cell))
    return out


def _onevision_cells(processed, config, specs, red) -> list[np.ndarray]:
    """Base view (the first tile's patches); then the tiles' patch evidence stitched, unpadded and
    resampled by the model's own functions, as `pack_image_features` does with the features."""
    import torch
    from transformers.models.llava_onevision.modeling_llava_onevision import get_anyres_image_grid_shape, unpad_image

    tiles = processed["pixel_values"].numpy()[0]
    patch = config.vision_config.patch_size
    side = config.vision_config.image_size // patch
    per_tile = [_cells(red(t, 0), side, side, patch) for t in tiles]
    out = [per_tile[0]]
    if len(specs) > 1:
        size = processed["image_sizes"][0].tolist()
        rows, cols = get_anyres_image_grid_shape(size, config.image_grid_pinpoints, config.vision_config.image_size)
        stitched = np.block([[per_tile[1 + r * cols + c] for c in range(cols)] for r in range(rows)])
        cut = unpad_image(torch.as_tensor(stitched)[None], size)
        _, h, w = specs[1].grid
        if tuple(cut.shape[1:]) != (h, w):
            cut = torch.nn.functional.interpolate(cut[None], [h, w], mode="bilinear")[0]
        out.append(cut[0].numpy())
    return out


CELL_FINDERS = {
    "qwen2_vl": _qwen_cells,
    "qwen2_5_vl": _qwen_cells,
    "qwen3_vl": _qwen_cells,
    "llava": _fixed_cells,
    "gemma3": _fixed_cells,
    "internvl": _fixed_cells,
    "llava_onevision": _onevision_cells,
}


def marker_cells(processor, config, processed, specs) -> list[np.ndarray]:
    """Per spec, the marker's evidence in every cell of its grid [H, W] (row-major grid order)."""
    return CELL_FINDERS[config.model_type](processed, config, specs, redness(processor))


def run_processor(processor, config, image: np.ndarray, **kwargs):
    """The family's processor on one image with its adapter's keyword arguments; returns (adapter, specs, processed)."""
    adapter = adapter_class(config.model_type)(SimpleNamespace(config=config), processor)
    item = MediaItem(kind="image", path="marker.png", pixels=image)
    token = processor.image_token if hasattr(processor, "image_token") else "<image>"
    prompt = f"{token} Describe."
    processed = processor(
        text=[prompt], images=[image], return_tensors="pt", return_text_replacement_offsets=True,
        **{**adapter.processor_kwargs([item]), **kwargs},
    )  # fmt: skip
    specs = adapter.block_specs([item], processed)
    return adapter, specs, processed


def locate(processor, config, width: int, height: int, x: float, y: float, **kwargs):
    """(error, grids, specs, allowed): the max over axes of |stored centre of the marker's cell -
    the marker's pixel centre| in cells (None when no grid shows the marker), the number of
    grids (tiles counted one by one), the grids' specs, and the error allowed for that cell."""
    image = marker_image(width, height, x, y)
    x, y = int(x) + 0.5, int(y) + 0.5  # the centre of the marker's middle pixel
    _adapter, specs, processed = run_processor(processor, config, image, **kwargs)
    cells = marker_cells(processor, config, processed, specs)
    grids = []  # (box, evidence [h, w]) of every grid, a tiled block's tiles one by one
    for spec, evidence in zip(specs, cells):
        if spec.tiles:
            grids.extend(
                (box, evidence[r : r + n, c : c + m]) for (r, c, n, m), box in zip(spec.tiles, spec.tile_boxes)
            )
        else:
            grids.append((spec.box, evidence))
    # the finest grid that holds the marker decides (tiles over the thumbnail / base view)
    best = None
    for box, evidence in grids:
        if evidence.max() <= 0:
            continue
        row, col = np.unravel_index(int(np.argmax(evidence)), evidence.shape)
        area = (box[2] - box[0]) * (box[3] - box[1]) / evidence.size
        if best is None or area < best[0]:
            best = (area, box, evidence.shape, int(row), int(col))
    count = len(grids)
    if best is None:
        return None, count, specs, 0.0
    _, box, (h, w), row, col = best
    cx, cy = cell_centre(MapFrame(0, h, w, 0, "image", 0, box=box), row, col)
    cell_w, cell_h = (box[2] - box[0]) / w, (box[3] - box[1]) / h
    error = max(abs(cx - x) / cell_w, abs(cy - y) / cell_h)
    # half a cell, plus half of the marker's source pixel (larger than a cell on tiny images)
    return error, count, specs, 0.5 + 0.5 / min(cell_w, cell_h)


def marker_points(width: int, height: int) -> list[tuple[float, float]]:
    """Marker positions spread over the image, away from the very border."""
    return [(width * fx, height * fy) for fx, fy in ((0.47, 0.53), (0.2, 0.3), (0.8, 0.7), (0.35, 0.85))]


def inside(specs, x: float, y: float) -> bool:
    """Whether source pixel (x, y) lies inside some grid's box."""
    x, y = int(x) + 0.5, int(y) + 0.5
    boxes = [b for s in specs for b in (s.tile_boxes or (s.box,))]
    return any(b[0] <= x < b[2] and b[1] <= y < b[3] for b in boxes)
