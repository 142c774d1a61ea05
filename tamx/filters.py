"""Denoising filters applied to every image and every video frame of a map (Eqs. 6-7).

All filters use a k x k window with reflect padding (numpy `mode="reflect"`, OpenCV's
BORDER_REFLECT_101). The default, rank Gaussian with k = 3, runs in numpy
(`rank_gaussian_3x3`: 25 elementwise comparators sort every window at once; after
`load_compiled_3x3`, as its bit-identical numba twin, for runs of many samples); the others run
as one numba kernel over many maps at once (`tamx.filter_kernels`), imported the first time
one is asked for: numba's import and first kernel take some 0.5 s, more than `tamx explain`
of a sample with the default filter. The adaptive median grows its window from 3 x 3 up to
k x k. Adding a filter: a window function, its number and branch in
`tamx.filter_kernels._window_value`, and a line in `FILTERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .defaults import FILTER, KERNEL_SIZE
from .errors import TamxError

RANK_GAUSSIAN, MEDIAN, GAUSSIAN, ADAPTIVE_MEDIAN = range(4)  # the window functions, by number


def check_kernel_size(kernel_size: int) -> int:
    """Return `kernel_size` if it is an odd integer >= 1, else raise."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)):
        raise TamxError(f"kernel size must be an odd integer >= 1, got {kernel_size!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise TamxError(f"kernel size must be odd and >= 1 (1, 3, 5, ...), got {kernel_size}")
    return int(kernel_size)


def check_filter_name(name: str) -> str:
    """Return `name` if it names a filter, else raise listing the valid names."""
    if name not in FILTERS:
        raise TamxError(f"unknown filter {name!r}; use one of {', '.join(FILTERS)}")
    return name


def opencv_gaussian_sigma(kernel_size: int) -> float:
    """The sigma OpenCV's GaussianBlur picks for a k x k kernel when sigma is 0."""
    return 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8


# Floyd's 25-comparator network for 9 values (the numba kernels' `_network9`).
_NETWORK9 = (
    (0, 3), (1, 7), (2, 5), (4, 8), (0, 7), (2, 4), (3, 8), (5, 6), (0, 2), (1, 3), (4, 5), (7, 8), (1, 4),
    (3, 6), (5, 7), (0, 1), (2, 4), (3, 5), (6, 8), (2, 3), (4, 5), (6, 7), (1, 2), (3, 4), (5, 6),
)  # fmt: skip
_CELLS_AT_ONCE = 16384  # cells filtered per block of maps: the temporaries stay in the cache


def _reflect_index(size: int) -> np.ndarray:
    """The source index of each of the size + 2 cells of an axis reflect-padded by one."""
    if size == 1:
        return np.zeros(3, dtype=np.intp)
    index = np.abs(np.arange(-1, size + 1))
    return np.where(index >= size, 2 * (size - 1) - index, index)


def _rank_gaussian_block(padded: np.ndarray, out: np.ndarray) -> None:
    """The 3x3 rank Gaussian of frames padded [B, H + 2, W + 2] (float32) into out [B, H, W]
    (float64), in the numba window function's order of operations. The sums run plane by plane
    into one float64 buffer (no [9, B, H, W] float64 copy of the window: half the time); float32
    operands enter float64 sums exactly (`dtype=np.float64`)."""
    b, height, width = out.shape
    windows = [padded[:, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
    total = windows[0].astype(np.float64)
    for window in windows[1:]:
        total += window  # in window order, one window after another
    ordered = [np.array(window) for window in windows]  # float32 holds every value exactly
    low = np.empty((b, height, width), dtype=np.float32)
    for i, j in _NETWORK9:
        np.minimum(ordered[i], ordered[j], out=low)
        np.maximum(ordered[i], ordered[j], out=ordered[j])
        ordered[i], low = low, ordered[i]
    mean = total / 9
    var = np.subtract(ordered[0], mean, dtype=np.float64)
    var *= var
    term = np.empty_like(var)
    for j in range(1, 9):  # the squared deviations, summed in rank order
        np.subtract(ordered[j], mean, out=term, dtype=np.float64)
        term *= term
        var += term
    var /= 9
    # Eq. 7 over the ranks d = 1..4 from the median: weight q^(d^2) via steps q^(2d - 1).
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = mean * mean
        np.negative(q, out=q)
        q /= 2.0 * var
        np.exp(q, out=q)  # var 0: 0 or NaN, not used below
        q2 = q * q
        weight, step = q.copy(), q * q2
        weight_sum = 2.0 * weight
        weight_sum += 1.0
        acc = np.add(ordered[3], ordered[5], dtype=np.float64)
        acc *= weight
        acc += ordered[4]
        for d, (lo, hi) in enumerate(((2, 6), (1, 7), (0, 8))):
            weight *= step
            if d < 2:
                step *= q2
            np.multiply(weight, 2.0, out=term)
            weight_sum += term
            np.add(ordered[lo], ordered[hi], out=term, dtype=np.float64)
            term *= weight
            acc += term
        np.divide(acc, weight_sum, out=out)
    np.copyto(out, ordered[4], where=var <= 0.0)  # a constant window: its value
    np.copyto(out, 0.0, where=total <= 0.0)  # Eq. 6: no activation in the window


_compiled_3x3: Callable[[np.ndarray], np.ndarray] | None = None  # set by load_compiled_3x3


def load_compiled_3x3() -> None:
    """From now on, run the default filter in this process (and processes forked from it) as
    numba kernels, with maps bit-identical to the numpy code's (3x faster; numba's import and
    kernels cost some 0.5 s once: for runs of many samples)."""
    global _compiled_3x3
    from .filter_kernels import rank_gaussian_3x3_blocks

    rank_gaussian_3x3_blocks(np.ones((1, 3, 3), dtype=np.float32))  # load the kernels now
    _compiled_3x3 = rank_gaussian_3x3_blocks


def rank_gaussian_3x3(maps: np.ndarray, frames: np.ndarray, compiled: bool | None = None) -> np.ndarray:
    """The default filter (rank Gaussian, k = 3) of maps [T, V] float32, frame by frame (frames
    as `filter_maps`), in numpy: float64 [T, V], equal to the numba window function's results
    but for the last bit of numpy's exp. compiled: run the numba twin of this code (the same
    bits), loading it if needed; None: if `load_compiled_3x3` was called."""
    if compiled and _compiled_3x3 is None:
        load_compiled_3x3()
    kernel = _compiled_3x3 if compiled or compiled is None else None
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    out = np.zeros(maps.shape, dtype=np.float64)
    count = maps.shape[0]
    for offset, height, width in np.asarray(frames).reshape(-1, 3).tolist():
        grid = maps[:, offset : offset + height * width].reshape(count, height, width)
        padded = grid[:, _reflect_index(height)[:, None], _reflect_index(width)[None, :]]
        if kernel is not None:
            out[:, offset : offset + height * width] = kernel(padded).reshape(count, -1)
            continue
        block = max(1, _CELLS_AT_ONCE // (height * width))
        for start in range(0, count, block):
            stop = min(count, start + block)
            target = np.empty((stop - start, height, width), dtype=np.float64)
            _rank_gaussian_block(padded[start:stop], target)
            out[start:stop, offset : offset + height * width] = target.reshape(stop - start, -1)
    return out


def _spatial_gaussian(kernel_size: int) -> np.ndarray:
    """Normalised k x k Gaussian weights (row-major) with OpenCV's default sigma."""
    sigma = opencv_gaussian_sigma(kernel_size)
    d = np.arange(kernel_size) - kernel_size // 2
    g = np.exp(-(d**2) / (2 * sigma**2))
    weights = np.outer(g, g).ravel()
    return weights / weights.sum()


@dataclass(frozen=True)
class Filter:
    """A registered filter: its window function's number (`_window_value`) and, if it has one, the
    builder of its k x k weights."""

    kind: int
    weights: Callable[[int], np.ndarray] | None = None


_NO_WEIGHTS = np.zeros(0, dtype=np.float64)

# name -> Filter; None: the maps pass unchanged. Adding a filter: a window function, its number
# and branch in `tamx.filter_kernels._window_value`, and a line here.
FILTERS: dict[str, Filter | None] = {
    "rank-gaussian": Filter(RANK_GAUSSIAN),
    "median": Filter(MEDIAN),
    "gaussian": Filter(GAUSSIAN, _spatial_gaussian),
    "adaptive-median": Filter(ADAPTIVE_MEDIAN),
    "none": None,
}


def filter_maps(maps: np.ndarray, frames: np.ndarray, name: str = FILTER, kernel_size: int = KERNEL_SIZE) -> np.ndarray:
    """Apply filter `name` to each frame of each map.

    maps: [T, V] float; frames: [F, 3] int64 rows (offset into V, H, W) covering V.
    Returns float32 [T, V]. "none" returns the maps unchanged (as float32). For
    "adaptive-median", k is the largest window (it starts at 3 x 3). The default (rank
    Gaussian, k = 3) runs in numpy; the others load numba's kernels (`tamx.filter_kernels`).
    """
    chosen = FILTERS[check_filter_name(name)]
    k = check_kernel_size(kernel_size)
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if chosen is None or maps.size == 0:
        return maps.copy()
    frames = np.ascontiguousarray(frames, dtype=np.int64).reshape(-1, 3)
    if chosen.kind == RANK_GAUSSIAN and k == 3:
        return rank_gaussian_3x3(maps, frames).astype(np.float32)
    from .filter_kernels import _filter_frames

    weights = _NO_WEIGHTS if chosen.weights is None else chosen.weights(k)
    return _filter_frames(maps, frames, k, weights, chosen.kind)


def filter_grid(grid: np.ndarray, name: str = FILTER, kernel_size: int = KERNEL_SIZE) -> np.ndarray:
    """Filter one 2-D map [H, W]; returns float32 [H, W]."""
    grid = np.asarray(grid)
    if grid.ndim != 2:
        raise TamxError(f"filter_grid takes a 2-D [H, W] array, got shape {grid.shape}")
    frames = np.array([[0, grid.shape[0], grid.shape[1]]])
    return filter_maps(grid.reshape(1, -1), frames, name, kernel_size).reshape(grid.shape)
