"""Where a map's cells lie on the source image: processor geometry and map projection (torch-free).

Encode describes what the processor did to an image with `Canvas` steps (resize, crop, pad,
tiles): a canvas is a pixel array whose outer edges lie at `box` in source pixels, so the box
of every grid follows from the steps alone. Everything that scores or draws maps projects
them through those boxes with `project_frames`: every output pixel samples the grid cell
under its centre (bilinear, OpenCV's half-pixel convention), and pixels no grid covers are
reported as not seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import TamxError
from .layout import MapFrame

Box = tuple[float, float, float, float]
COMPOSE_MODES = ("finest", "mean")


@dataclass(frozen=True)
class Canvas:
    """A `width` x `height` pixel array whose outer edges lie at `box` (x0, y0, x1, y1) in source pixels."""

    width: float
    height: float
    box: Box

    @classmethod
    def source(cls, width: int, height: int) -> Canvas:
        """The source image itself."""
        return cls(float(width), float(height), (0.0, 0.0, float(width), float(height)))

    def resize(self, width: float, height: float) -> Canvas:
        """The same picture resampled to width x height pixels (aspect may change)."""
        return Canvas(float(width), float(height), self.box)

    def crop(self, left: float, top: float, width: float, height: float) -> Canvas:
        """The window of width x height pixels from (left, top); parts outside the canvas are padding."""
        x0, y0, x1, y1 = self.box
        sx, sy = (x1 - x0) / self.width, (y1 - y0) / self.height
        return Canvas(
            float(width),
            float(height),
            (x0 + left * sx, y0 + top * sy, x0 + (left + width) * sx, y0 + (top + height) * sy),
        )

    def pad(self, left: float, top: float, right: float, bottom: float) -> Canvas:
        """The canvas with padding pixels added on each side."""
        return self.crop(-left, -top, self.width + left + right, self.height + top + bottom)

    def tile(self, rows: int, cols: int, row: int, col: int) -> Canvas:
        """Tile (row, col) of a rows x cols split into equal parts."""
        width, height = self.width / cols, self.height / rows
        return self.crop(col * width, row * height, width, height)


def frame_groups(frames: Sequence[MapFrame]) -> list[list[MapFrame]]:
    """The frames drawn onto one picture together: every grid of one image (tiles, thumbnail),
    or every grid of one video frame; in map order of their first frame."""
    groups: dict[tuple, list[MapFrame]] = {}
    for frame in frames:
        key = (frame.kind, frame.media, frame.frame if frame.kind == "video" else None)
        groups.setdefault(key, []).append(frame)
    return list(groups.values())


def _source_size(frame: MapFrame, size: tuple[int, int]) -> tuple[float, float]:
    """(width, height) of the frame's source image; the output size when it is not recorded."""
    if frame.image_size is not None:
        return float(frame.image_size[0]), float(frame.image_size[1])
    return float(size[1]), float(size[0])


def _frame_box(frame: MapFrame, source: tuple[float, float]) -> Box:
    return frame.box if frame.box is not None else (0.0, 0.0, source[0], source[1])


def cell_area(frame: MapFrame, size: tuple[int, int]) -> float:
    """Area of one cell of the frame in source pixels (smaller is finer)."""
    x0, y0, x1, y1 = _frame_box(frame, _source_size(frame, size))
    return (x1 - x0) / frame.width * (y1 - y0) / frame.height


@dataclass(frozen=True)
class _Sampler:
    """How one grid is sampled at the output pixels it covers (a rectangle, `rows` x `cols`):
    a plain resize when the grid covers the whole image, else OpenCV remap coordinates."""

    frame: MapFrame
    rows: slice
    cols: slice
    map_x: np.ndarray | None = None
    map_y: np.ndarray | None = None

    def sample(self, row: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The frame's grid of map `row` [V] (uint8 or float32) at the covered pixels: [h, w]."""
        f = self.frame
        grid = row[f.offset : f.offset + f.size].reshape(f.height, f.width)
        if self.map_x is None:
            return cv2.resize(grid, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return cv2.remap(grid, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _covered(start: float, stop: float, centres: np.ndarray) -> slice:
    """The output pixels whose centre lies in [start, stop): a slice (possibly empty)."""
    inside = np.flatnonzero((centres >= start) & (centres < stop))
    return slice(int(inside[0]), int(inside[-1]) + 1) if len(inside) else slice(0, 0)


def _sampler(frame: MapFrame, size: tuple[int, int]) -> _Sampler:
    out_h, out_w = size
    src_w, src_h = _source_size(frame, size)
    x0, y0, x1, y1 = _frame_box(frame, (src_w, src_h))
    if np.allclose((x0, y0, x1, y1), (0.0, 0.0, src_w, src_h)):
        # the grid covers the whole image: a plain bilinear resize (as before boxes were recorded)
        return _Sampler(frame, slice(0, out_h), slice(0, out_w))
    xs = (np.arange(out_w, dtype=np.float64) + 0.5) * (src_w / out_w)
    ys = (np.arange(out_h, dtype=np.float64) + 0.5) * (src_h / out_h)
    rows, cols = _covered(y0, y1, ys), _covered(x0, x1, xs)
    u = ((xs[cols] - x0) / (x1 - x0) * frame.width - 0.5).astype(np.float32)
    v = ((ys[rows] - y0) / (y1 - y0) * frame.height - 0.5).astype(np.float32)
    shape = (len(v), len(u))
    map_x = np.ascontiguousarray(np.broadcast_to(u[None, :], shape))
    map_y = np.ascontiguousarray(np.broadcast_to(v[:, None], shape))
    return _Sampler(frame, rows, cols, map_x, map_y)


class MapProjector:
    """`project_maps` one map at a time: the grids' samplers and the seen pixels are made once, so
    a caller can project only the maps it needs (eval projects the tokens it scores)."""

    def __init__(self, frames: Sequence[MapFrame], size: tuple[int, int], compose: str = "mean"):
        if compose not in COMPOSE_MODES:
            raise TamxError(f"unknown compose mode {compose!r}; use one of {', '.join(COMPOSE_MODES)}")
        if not frames:
            raise TamxError("project_frames needs at least one frame")
        self.size = (int(size[0]), int(size[1]))
        # coarse grids first, so that with "finest" the finer ones paint over them
        self.samplers = [_sampler(f, self.size) for f in sorted(frames, key=lambda f: -cell_area(f, self.size))]
        count = np.zeros(self.size, dtype=np.float32)
        for sampler in self.samplers:
            count[sampler.rows, sampler.cols] += 1.0
        self.seen = count > 0
        self.mean = compose == "mean" and len(self.samplers) > 1
        if self.mean:
            self.weight = np.divide(1.0, count, out=np.zeros(self.size, np.float32), where=self.seen)

    def project(self, row: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One map [V] (uint8 or float32) on the pixels: [H, W] of its dtype, 0 where unseen (into `out`)."""
        size = self.size
        if out is None and len(self.samplers) == 1 and self.seen.all():
            return self.samplers[0].sample(row, size)  # one grid over every pixel: its resize is the map
        out = np.zeros(size, dtype=row.dtype) if out is None else out
        if not self.mean:
            for sampler in self.samplers:
                out[sampler.rows, sampler.cols] = sampler.sample(row, size)
            return out
        total = np.zeros(size, dtype=np.float32)
        for sampler in self.samplers:
            total[sampler.rows, sampler.cols] += sampler.sample(row, size)
        total *= self.weight
        if row.dtype == np.uint8:
            total += 0.5  # round half up: the average of uint8 values stays within 0..255
        out[...] = total
        return out


def project_maps(
    values: np.ndarray, frames: Sequence[MapFrame], size: tuple[int, int], compose: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """`project_frames` for many maps at once: values [N, V] -> (heat [N, H, W], seen [H, W])."""
    projector = MapProjector(frames, size, compose)
    values = np.asarray(values)
    values = values if values.dtype == np.uint8 else values.astype(np.float32, copy=False)
    out = np.zeros((len(values), *projector.size), dtype=values.dtype)
    for index, row in enumerate(values):
        projector.project(row, out[index])
    return out, projector.seen


def project_frames(
    values: np.ndarray, frames: Sequence[MapFrame], size: tuple[int, int], compose: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Project one picture's grids of a map onto `size` = (H, W) pixels of its source image.

    values: [V] one map over all cells (the frames' offsets index it); frames: the grids of
    one picture (`frame_groups`): an image with its tiles and thumbnail, or one video frame.
    compose: where grids overlap (tiles and the thumbnail or base view), "mean" averages every
    grid covering the pixel (the default: on benchmarks/tile_compose.py it scores as well as
    "finest" at moderate noise and better at heavy noise), "finest" takes the grid with the
    smallest cells (tiles over the thumbnail). Each grid is sampled at its own resolution, so
    the result has the detail of the finest tile either way.
    Returns (heat [H, W], seen [H, W] bool): heat is uint8 for a uint8 map, else float32, and
    0 where no grid covers the pixel (seen False: the model never saw it).
    """
    heat, seen = project_maps(np.asarray(values)[None], frames, size, compose)
    return heat[0], seen


def cell_centre(frame: MapFrame, row: int, col: int) -> tuple[float, float]:
    """Source-pixel (x, y) of the centre of cell (row, col) of a frame (whole image when box is None)."""
    if frame.box is None:
        if frame.image_size is None:
            raise TamxError("the frame records neither a box nor an image size")
        x0, y0, x1, y1 = 0.0, 0.0, float(frame.image_size[0]), float(frame.image_size[1])
    else:
        x0, y0, x1, y1 = frame.box
    return x0 + (col + 0.5) * (x1 - x0) / frame.width, y0 + (row + 0.5) * (y1 - y0) / frame.height
