"""The numba kernels of the filters that run in numba (tamx.filters): every filter but the default.

Imported by `tamx.filters` only when a map needs one: numba's import and first kernel call take
some 0.5 s, more than `tamx explain` of one sample with the default filter (rank Gaussian,
k = 3), which runs in numpy (`tamx.filters.rank_gaussian_3x3`).

A filter is one jitted window function `fn(padded, stride, y, x, k, window, weights) ->
float` (the value at cell (y, x) of a frame padded by k // 2 cells, row stride `stride`;
`window` is k * k scratch cells, `weights` what the filter's `weights` builder made, else
empty), its number in `_window_value`, and one line in `tamx.filters.FILTERS`; the frame loop
(`_filter_frames`) is written once. (The loop picks the window function by number: numba never
finds a cached kernel that captures another jitted function, so every process recompiled it.)
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .filters import GAUSSIAN, MEDIAN, RANK_GAUSSIAN

_INSERTION_SORT_UP_TO = 121  # up to 11 x 11 insertion sort beats numba's quicksort (kernel_size_bench)


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


# The default filter's numba twin (tamx.filters.rank_gaussian_3x3 with compiled=True): the same
# float32 sorting network and float64 arithmetic in the same order as the numpy code, and numpy's
# own exp between two passes, so that the maps are bit-identical to the numpy filter's whichever
# runs (numba's exp, the C library's, differs from numpy's in the last bit). Written out (no
# helper kernels captured): numba finds cached kernels that call no other jitted function.


@numba.njit(cache=True, inline="always")
def _min(a: float, b: float) -> float:
    """np.minimum of two floats (NaN passes; of equal values, the first)."""
    return a if a <= b or a != a else b


@numba.njit(cache=True, inline="always")
def _max(a: float, b: float) -> float:
    """np.maximum of two floats (NaN passes; of equal values, the first)."""
    return a if a >= b or a != a else b


@numba.njit(cache=True, inline="always")
def _window_3x3(padded: np.ndarray, b: int, y: int, x: int) -> tuple:
    """The 3x3 window at (b, y, x) of padded [B, H + 2, W + 2] float32, sorted by the numpy code's
    network (v0..v8), with its float64 sum (in reading order), mean and population variance (in
    sorted order): the steps both kernels share, in the numpy code's order."""
    v0 = padded[b, y + 0, x + 0]
    v1 = padded[b, y + 0, x + 1]
    v2 = padded[b, y + 0, x + 2]
    v3 = padded[b, y + 1, x + 0]
    v4 = padded[b, y + 1, x + 1]
    v5 = padded[b, y + 1, x + 2]
    v6 = padded[b, y + 2, x + 0]
    v7 = padded[b, y + 2, x + 1]
    v8 = padded[b, y + 2, x + 2]
    total = np.float64(v0)
    total += np.float64(v1)
    total += np.float64(v2)
    total += np.float64(v3)
    total += np.float64(v4)
    total += np.float64(v5)
    total += np.float64(v6)
    total += np.float64(v7)
    total += np.float64(v8)
    v0, v3 = _min(v0, v3), _max(v0, v3)
    v1, v7 = _min(v1, v7), _max(v1, v7)
    v2, v5 = _min(v2, v5), _max(v2, v5)
    v4, v8 = _min(v4, v8), _max(v4, v8)
    v0, v7 = _min(v0, v7), _max(v0, v7)
    v2, v4 = _min(v2, v4), _max(v2, v4)
    v3, v8 = _min(v3, v8), _max(v3, v8)
    v5, v6 = _min(v5, v6), _max(v5, v6)
    v0, v2 = _min(v0, v2), _max(v0, v2)
    v1, v3 = _min(v1, v3), _max(v1, v3)
    v4, v5 = _min(v4, v5), _max(v4, v5)
    v7, v8 = _min(v7, v8), _max(v7, v8)
    v1, v4 = _min(v1, v4), _max(v1, v4)
    v3, v6 = _min(v3, v6), _max(v3, v6)
    v5, v7 = _min(v5, v7), _max(v5, v7)
    v0, v1 = _min(v0, v1), _max(v0, v1)
    v2, v4 = _min(v2, v4), _max(v2, v4)
    v3, v5 = _min(v3, v5), _max(v3, v5)
    v6, v8 = _min(v6, v8), _max(v6, v8)
    v2, v3 = _min(v2, v3), _max(v2, v3)
    v4, v5 = _min(v4, v5), _max(v4, v5)
    v6, v7 = _min(v6, v7), _max(v6, v7)
    v1, v2 = _min(v1, v2), _max(v1, v2)
    v3, v4 = _min(v3, v4), _max(v3, v4)
    v5, v6 = _min(v5, v6), _max(v5, v6)
    mean = total / 9
    d = np.float64(v0) - mean
    var = d * d
    d = np.float64(v1) - mean
    var += d * d
    d = np.float64(v2) - mean
    var += d * d
    d = np.float64(v3) - mean
    var += d * d
    d = np.float64(v4) - mean
    var += d * d
    d = np.float64(v5) - mean
    var += d * d
    d = np.float64(v6) - mean
    var += d * d
    d = np.float64(v7) - mean
    var += d * d
    d = np.float64(v8) - mean
    var += d * d
    var /= 9
    return v0, v1, v2, v3, v4, v5, v6, v7, v8, total, mean, var


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rank_gaussian_3x3_exponent(padded: np.ndarray, q: np.ndarray) -> None:
    """Into q [B, H, W]: -mean^2 / (2 var) of each 3x3 window of padded [B, H + 2, W + 2] float32."""
    count, height, width = q.shape
    for b in range(count):
        for y in range(height):
            for x in range(width):
                _, _, _, _, _, _, _, _, _, _total, mean, var = _window_3x3(padded, b, y, x)
                m = mean * mean
                q[b, y, x] = (-m) / (2.0 * var)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rank_gaussian_3x3_finish(padded: np.ndarray, q: np.ndarray, out: np.ndarray) -> None:
    """Into out [B, H, W]: the rank Gaussian of each window, q [B, H, W] holding exp(exponent)."""
    count, height, width = q.shape
    for b in range(count):
        for y in range(height):
            for x in range(width):
                v0, v1, v2, v3, v4, v5, v6, v7, v8, total, _mean, var = _window_3x3(padded, b, y, x)
                if total <= 0.0:  # Eq. 6: no activation in the window
                    out[b, y, x] = 0.0
                    continue
                if var <= 0.0:  # a constant window: its value
                    out[b, y, x] = v4
                    continue
                qq = q[b, y, x]
                q2 = qq * qq
                weight = qq
                step = qq * q2
                weight_sum = 2.0 * weight
                weight_sum += 1.0
                acc = np.float64(v3) + np.float64(v5)
                acc *= weight
                acc += np.float64(v4)
                weight *= step
                step *= q2
                weight_sum += weight * 2.0
                acc += (np.float64(v2) + np.float64(v6)) * weight
                weight *= step
                step *= q2
                weight_sum += weight * 2.0
                acc += (np.float64(v1) + np.float64(v7)) * weight
                weight *= step
                weight_sum += weight * 2.0
                acc += (np.float64(v0) + np.float64(v8)) * weight
                out[b, y, x] = acc / weight_sum


def rank_gaussian_3x3_blocks(padded: np.ndarray) -> np.ndarray:
    """The 3x3 rank Gaussian of frames padded [B, H + 2, W + 2] float32: float64 [B, H, W],
    bit-identical to tamx.filters' numpy code."""
    padded = np.ascontiguousarray(padded, dtype=np.float32)
    q = np.empty((padded.shape[0], padded.shape[1] - 2, padded.shape[2] - 2), dtype=np.float64)
    out = np.empty_like(q)
    _rank_gaussian_3x3_exponent(padded, q)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.exp(q, out=q)
    _rank_gaussian_3x3_finish(padded, q, out)
    return out
