"""Denoising filters applied to every image and every video frame of a map (Eqs. 6-7).

All filters use a k x k window with reflect padding (numpy `mode="reflect"`, OpenCV's
BORDER_REFLECT_101) and run as one numba kernel over many maps at once. The adaptive
median grows its window from 3 x 3 up to k x k (see `_adaptive_median`).

A filter is one jitted window function `fn(padded, stride, y, x, k, window, weights) ->
float` (the value at cell (y, x) of a frame padded by k // 2 cells, row stride `stride`;
`window` is k * k scratch cells, `weights` what the filter's `weights` builder made, else
empty), its number in `_window_value`, and one line in `FILTERS`; the frame loop
(`_filter_frames`) is written once. (The loop picks the window function by number: numba never
finds a cached kernel that captures another jitted function, so every process recompiled it.)
The default, rank Gaussian with k = 3, has a kernel of its own (`_rank_gaussian_3x3`): the
same arithmetic, bit for bit, laid out for vector units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from .defaults import FILTER, KERNEL_SIZE
from .errors import TamxError

_INSERTION_SORT_UP_TO = 121  # up to 11 x 11 insertion sort beats numba's quicksort (kernel_size_bench)


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


@numba.njit(cache=True, inline="always")
def _reflect(index: int, size: int) -> int:
    """numpy's reflect padding of an out-of-range index (any distance, any size >= 1)."""
    if size == 1:
        return 0
    period = 2 * (size - 1)
    index = index % period
    return period - index if index >= size else index


@numba.njit(cache=True, inline="always")
def _order(a: float, b: float) -> tuple[float, float]:
    return min(a, b), max(a, b)


@numba.njit(cache=True, inline="always")
def _network9(
    a0: float, a1: float, a2: float, a3: float, a4: float, a5: float, a6: float, a7: float, a8: float
) -> tuple[float, float, float, float, float, float, float, float, float]:
    """9 values sorted by Floyd's 25-comparator network (branch-free: in registers, and across a
    row's cells in vector units)."""
    a0, a3 = _order(a0, a3)
    a1, a7 = _order(a1, a7)
    a2, a5 = _order(a2, a5)
    a4, a8 = _order(a4, a8)
    a0, a7 = _order(a0, a7)
    a2, a4 = _order(a2, a4)
    a3, a8 = _order(a3, a8)
    a5, a6 = _order(a5, a6)
    a0, a2 = _order(a0, a2)
    a1, a3 = _order(a1, a3)
    a4, a5 = _order(a4, a5)
    a7, a8 = _order(a7, a8)
    a1, a4 = _order(a1, a4)
    a3, a6 = _order(a3, a6)
    a5, a7 = _order(a5, a7)
    a0, a1 = _order(a0, a1)
    a2, a4 = _order(a2, a4)
    a3, a5 = _order(a3, a5)
    a6, a8 = _order(a6, a8)
    a2, a3 = _order(a2, a3)
    a4, a5 = _order(a4, a5)
    a6, a7 = _order(a6, a7)
    a1, a2 = _order(a1, a2)
    a3, a4 = _order(a3, a4)
    a5, a6 = _order(a5, a6)
    return a0, a1, a2, a3, a4, a5, a6, a7, a8


@numba.njit(cache=True, inline="always")
def _sort9(w: np.ndarray) -> None:
    """Sort 9 values in place (`_network9`)."""
    w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8] = _network9(
        w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
    )


@numba.njit(cache=True, inline="always")
def _sort_small(values: np.ndarray, n: int) -> None:
    """Sort values[:n] in place: the network for 3x3 windows, insertion sort up to 11x11,
    numba's quicksort (O(n log n)) for larger windows."""
    if n == 9:
        _sort9(values)
        return
    if n > _INSERTION_SORT_UP_TO:
        values[:n].sort()
        return
    for i in range(1, n):
        current = values[i]
        j = i - 1
        while j >= 0 and values[j] > current:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = current


@numba.njit(cache=True, inline="always")
def _gather(padded: np.ndarray, stride: int, y: int, x: int, k: int, window: np.ndarray) -> float:
    """Copy the k x k window of cell (y, x) into window[:k*k] (row-major); returns its sum."""
    m = 0
    total = 0.0
    for dy in range(k):
        base = (y + dy) * stride + x
        for dx in range(k):
            value = padded[base + dx]
            window[m] = value
            total += value
            m += 1
    return total


@numba.njit(cache=True, inline="always")
def _rank_gaussian(
    padded: np.ndarray, stride: int, y: int, x: int, k: int, window: np.ndarray, weights: np.ndarray
) -> float:
    """Eqs. 6-7: Gaussian weights over the window's ranks, centred on the median; 0 where the
    window's mean is <= 0 (before any sorting)."""
    n = k * k
    total = _gather(padded, stride, y, x, k, window)
    if total <= 0.0:
        return 0.0
    _sort_small(window, n)
    mean = total / n
    var = 0.0
    for j in range(n):
        deviation = window[j] - mean
        var += deviation * deviation
    var /= n
    centre = n // 2
    if var <= 0.0:
        return window[centre]
    # g_d = exp(-d^2 / (2 sigma^2)) with sigma = sd / mean; g_d = q^(d^2) via q^(2d-1) steps.
    q = math.exp(-(mean * mean) / (2.0 * var))
    weight_sum = 1.0
    acc = window[centre]
    weight = 1.0
    step = q
    for d in range(1, centre + 1):
        weight *= step
        step *= q * q
        if weight == 0.0:
            break
        weight_sum += 2.0 * weight
        acc += weight * (window[centre - d] + window[centre + d])
    return acc / weight_sum


@numba.njit(cache=True, inline="always")
def _median(padded: np.ndarray, stride: int, y: int, x: int, k: int, window: np.ndarray, weights: np.ndarray) -> float:
    """The median of the k x k window."""
    n = k * k
    _gather(padded, stride, y, x, k, window)
    _sort_small(window, n)
    return window[n // 2]


@numba.njit(cache=True, inline="always")
def _gaussian(
    padded: np.ndarray, stride: int, y: int, x: int, k: int, window: np.ndarray, weights: np.ndarray
) -> float:
    """The spatial Gaussian blur: `weights` are the k x k normalised weights (row-major)."""
    _gather(padded, stride, y, x, k, window)
    result = 0.0
    for j in range(k * k):
        result += weights[j] * window[j]
    return result


@numba.njit(cache=True, inline="always")
def _adaptive_median(
    padded: np.ndarray, stride: int, y: int, x: int, k: int, window: np.ndarray, weights: np.ndarray
) -> float:
    """The adaptive median filter (Hwang & Haddad 1995, as used by Chang et al. 2008) at one cell.

    z is the cell's value. For window sizes s = 3, 5, ..., k (k is the largest window):
    take the s x s window's min, median (the middle of the s^2 sorted values) and max.
    If min < median < max, the median is not an impulse: output z when min < z < max (z is not
    an impulse either), else the median. Otherwise grow the window; when s = k is reached
    without a non-impulse median, output the k x k median. k = 1 outputs z.
    """
    half = k // 2
    centre = (y + half) * stride + x + half
    z = padded[centre]
    if k < 3:
        return z
    median = z
    for s in range(3, k + 1, 2):
        r = s // 2
        n = 0
        for dy in range(-r, r + 1):
            base = centre + dy * stride
            for dx in range(-r, r + 1):
                window[n] = padded[base + dx]
                n += 1
        _sort_small(window, n)
        low, median, high = window[0], window[n // 2], window[n - 1]
        if low < median < high:
            return z if low < z < high else median
    return median


RANK_GAUSSIAN, MEDIAN, GAUSSIAN, ADAPTIVE_MEDIAN = range(4)  # the window functions, by number


@numba.njit(cache=True, inline="always")
def _window_value(
    kind: int, padded: np.ndarray, stride: int, y: int, x: int, k: int, window: np.ndarray, weights: np.ndarray
) -> float:
    """The value of window function `kind` at cell (y, x). A number, not a function argument:
    numba cannot cache a kernel that captures another jitted function (its key changes every process)."""
    if kind == RANK_GAUSSIAN:
        return _rank_gaussian(padded, stride, y, x, k, window, weights)
    if kind == MEDIAN:
        return _median(padded, stride, y, x, k, window, weights)
    if kind == GAUSSIAN:
        return _gaussian(padded, stride, y, x, k, window, weights)
    return _adaptive_median(padded, stride, y, x, k, window, weights)


@numba.njit(cache=True)
def _padding_tables(frames: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Reflect-padding tables of every frame, computed once: the source offset of each padded row
    (into V) and column, where each frame's rows / columns start in them, and the largest padded frame."""
    row_start = np.zeros(frames.shape[0] + 1, dtype=np.int64)
    col_start = np.zeros(frames.shape[0] + 1, dtype=np.int64)
    largest = 0
    for f in range(frames.shape[0]):
        height, width = frames[f, 1], frames[f, 2]
        row_start[f + 1] = row_start[f] + height + 2 * half
        col_start[f + 1] = col_start[f] + width + 2 * half
        largest = max(largest, (height + 2 * half) * (width + 2 * half))
    src_rows = np.empty(row_start[-1], dtype=np.int64)
    src_cols = np.empty(col_start[-1], dtype=np.int64)
    for f in range(frames.shape[0]):
        offset, height, width = frames[f, 0], frames[f, 1], frames[f, 2]
        for py in range(height + 2 * half):
            src_rows[row_start[f] + py] = offset + _reflect(py - half, height) * width
        for px in range(width + 2 * half):
            src_cols[col_start[f] + px] = _reflect(px - half, width)
    return src_rows, row_start, src_cols, col_start, largest


@numba.njit(cache=True, inline="always")
def _pad_frame(
    maps: np.ndarray,
    t: int,
    f: int,
    frames: np.ndarray,
    half: int,
    tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
    padded: np.ndarray,
) -> int:
    """Copy frame `f` of map `t`, reflect-padded by `half` cells (`_padding_tables`), into `padded`
    row-major; returns its row stride."""
    src_rows, row_start, src_cols, col_start, _ = tables
    height, width = frames[f, 1], frames[f, 2]
    stride = width + 2 * half
    for py in range(height + 2 * half):
        row = src_rows[row_start[f] + py]
        for px in range(stride):
            padded[py * stride + px] = maps[t, row + src_cols[col_start[f] + px]]
    return stride


@numba.njit(cache=True, inline="always")
def _filter_map(
    maps: np.ndarray,
    t: int,
    out: np.ndarray,
    frames: np.ndarray,
    k: int,
    weights: np.ndarray,
    kind: int,
    tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
) -> None:
    """Filter map `t` of maps [T, V] into out[t], frame by frame, with window function `kind`."""
    largest = tables[4]
    half = k // 2
    window = np.empty(k * k, dtype=np.float64)
    padded = np.empty(largest, dtype=np.float64)
    for f in range(frames.shape[0]):
        offset, height, width = frames[f, 0], frames[f, 1], frames[f, 2]
        stride = _pad_frame(maps, t, f, frames, half, tables, padded)
        for y in range(height):
            for x in range(width):
                out[t, offset + y * width + x] = _window_value(kind, padded, stride, y, x, k, window, weights)


@numba.njit(cache=True, nogil=True)
def _filter_frames(maps: np.ndarray, frames: np.ndarray, k: int, weights: np.ndarray, kind: int) -> np.ndarray:
    """Filter maps [T, V] frame by frame with window function `kind`; frames[f] = (offset into V, H, W).

    One thread, without the GIL: explain runs a sample per core (in its worker processes, or
    `tamx serve`'s threads), and a parallel kernel took 0.28 s to load in every process."""
    out = np.zeros_like(maps)
    tables = _padding_tables(frames, k // 2)
    if kind == RANK_GAUSSIAN:  # (k > 3) a loop of its own, free of the dispatch per cell: 2x faster
        for t in range(maps.shape[0]):
            _filter_map(maps, t, out, frames, k, weights, RANK_GAUSSIAN, tables)
    else:
        for t in range(maps.shape[0]):
            _filter_map(maps, t, out, frames, k, weights, kind, tables)
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rank_gaussian_3x3(maps: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The default filter (rank Gaussian, k = 3) with the same arithmetic as `_rank_gaussian`, bit for
    bit, laid out for the compiler's vector units: a row's windows are sorted and measured in
    one branch-free loop, their exponentials taken in a second, the weighted sums in a third
    (2.3x faster than the per-cell window function, which branches). frames as `_filter_frames`."""
    out = np.zeros_like(maps)
    tables = _padding_tables(frames, 1)
    largest = tables[4]
    widest = int(frames[:, 2].max()) if frames.shape[0] else 0
    padded = np.empty(largest, dtype=np.float64)
    ranked = np.empty((9, widest), dtype=np.float64)  # each window of a row, sorted
    total = np.empty(widest, dtype=np.float64)
    var = np.empty(widest, dtype=np.float64)
    q = np.empty(widest, dtype=np.float64)
    for t in range(maps.shape[0]):
        for f in range(frames.shape[0]):
            offset, height, width = frames[f, 0], frames[f, 1], frames[f, 2]
            stride = _pad_frame(maps, t, f, frames, 1, tables, padded)
            for y in range(height):
                r0, r1, r2 = y * stride, (y + 1) * stride, (y + 2) * stride
                for x in range(width):
                    a0, a1, a2 = padded[r0 + x], padded[r0 + x + 1], padded[r0 + x + 2]
                    a3, a4, a5 = padded[r1 + x], padded[r1 + x + 1], padded[r1 + x + 2]
                    a6, a7, a8 = padded[r2 + x], padded[r2 + x + 1], padded[r2 + x + 2]
                    t0 = 0.0  # summed in window order, as _gather does
                    t0 += a0
                    t0 += a1
                    t0 += a2
                    t0 += a3
                    t0 += a4
                    t0 += a5
                    t0 += a6
                    t0 += a7
                    t0 += a8
                    a0, a1, a2, a3, a4, a5, a6, a7, a8 = _network9(a0, a1, a2, a3, a4, a5, a6, a7, a8)
                    mean = t0 / 9
                    v = 0.0
                    v += (a0 - mean) * (a0 - mean)
                    v += (a1 - mean) * (a1 - mean)
                    v += (a2 - mean) * (a2 - mean)
                    v += (a3 - mean) * (a3 - mean)
                    v += (a4 - mean) * (a4 - mean)
                    v += (a5 - mean) * (a5 - mean)
                    v += (a6 - mean) * (a6 - mean)
                    v += (a7 - mean) * (a7 - mean)
                    v += (a8 - mean) * (a8 - mean)
                    ranked[0, x], ranked[1, x], ranked[2, x] = a0, a1, a2
                    ranked[3, x], ranked[4, x], ranked[5, x] = a3, a4, a5
                    ranked[6, x], ranked[7, x], ranked[8, x] = a6, a7, a8
                    total[x] = t0
                    var[x] = v / 9
                for x in range(width):
                    mean = total[x] / 9
                    q[x] = math.exp(-(mean * mean) / (2.0 * var[x]))  # var 0: 0 or NaN, not used below
                base = offset + y * width
                for x in range(width):
                    # _rank_gaussian's loop unrolled: a weight that reaches 0 adds 0 from there on
                    qx = q[x]
                    q2 = qx * qx
                    weight, step = qx, qx * q2
                    weight_sum = 1.0 + 2.0 * weight
                    acc = ranked[4, x] + weight * (ranked[3, x] + ranked[5, x])
                    weight *= step
                    step *= q2
                    weight_sum += 2.0 * weight
                    acc += weight * (ranked[2, x] + ranked[6, x])
                    weight *= step
                    step *= q2
                    weight_sum += 2.0 * weight
                    acc += weight * (ranked[1, x] + ranked[7, x])
                    weight *= step
                    weight_sum += 2.0 * weight
                    acc += weight * (ranked[0, x] + ranked[8, x])
                    value = ranked[4, x] if var[x] <= 0.0 else acc / weight_sum
                    out[t, base + x] = 0.0 if total[x] <= 0.0 else value
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
# and branch in `_window_value`, and a line here.
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
    "adaptive-median", k is the largest window (it starts at 3 x 3).
    """
    chosen = FILTERS[check_filter_name(name)]
    k = check_kernel_size(kernel_size)
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if chosen is None or maps.size == 0:
        return maps.copy()
    frames = np.ascontiguousarray(frames, dtype=np.int64).reshape(-1, 3)
    if chosen.kind == RANK_GAUSSIAN and k == 3:
        return _rank_gaussian_3x3(maps, frames)
    weights = _NO_WEIGHTS if chosen.weights is None else chosen.weights(k)
    return _filter_frames(maps, frames, k, weights, chosen.kind)


def filter_grid(grid: np.ndarray, name: str = FILTER, kernel_size: int = KERNEL_SIZE) -> np.ndarray:
    """Filter one 2-D map [H, W]; returns float32 [H, W]."""
    grid = np.asarray(grid)
    if grid.ndim != 2:
        raise TamxError(f"filter_grid takes a 2-D [H, W] array, got shape {grid.shape}")
    frames = np.array([[0, grid.shape[0], grid.shape[1]]])
    return filter_maps(grid.reshape(1, -1), frames, name, kernel_size).reshape(grid.shape)
