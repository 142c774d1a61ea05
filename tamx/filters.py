"""Denoising filters applied to every image and every video frame of a map (Eqs. 6-7).

All filters use a k x k window with reflect padding (numpy `mode="reflect"`, OpenCV's
BORDER_REFLECT_101) and run as one numba kernel over many maps at once.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .errors import TamxError

RANK_GAUSSIAN, MEDIAN, GAUSSIAN = 0, 1, 2
FILTERS = {"rank-gaussian": RANK_GAUSSIAN, "median": MEDIAN, "gaussian": GAUSSIAN, "none": -1}


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
def _sort_small(values: np.ndarray, n: int) -> None:
    """In-place insertion sort of values[:n]; fastest for the 9..49 values of a window."""
    for i in range(1, n):
        current = values[i]
        j = i - 1
        while j >= 0 and values[j] > current:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = current


@numba.njit(cache=True, inline="always")
def _rank_gaussian(window: np.ndarray, n: int) -> float:
    """Eq. 6-7 on one sorted window: Gaussian weights over ranks, centred on the median."""
    mean = 0.0
    for j in range(n):
        mean += window[j]
    mean /= n
    if mean <= 0.0:
        return 0.0
    var = 0.0
    for j in range(n):
        var += (window[j] - mean) ** 2
    var /= n
    centre = n // 2
    if var <= 0.0:
        return window[centre]
    # g_d = exp(-d^2 / (2 sigma^2)) with sigma = sd / mean; g_d = q^(d^2) via q^(2d-1) steps.
    q = math.exp(-(mean * mean) / (2.0 * var))
    total = 1.0
    acc = window[centre]
    weight = 1.0
    step = q
    for d in range(1, centre + 1):
        weight *= step
        step *= q * q
        if weight == 0.0:
            break
        total += 2.0 * weight
        acc += weight * (window[centre - d] + window[centre + d])
    return acc / total


@numba.njit(cache=True, parallel=True)
def _filter_frames(maps: np.ndarray, frames: np.ndarray, k: int, kind: int, spatial: np.ndarray) -> np.ndarray:
    """Filter maps [T, V] frame by frame; frames[f] = (offset into V, H, W)."""
    out = np.zeros_like(maps)
    half = k // 2
    n = k * k
    for t in numba.prange(maps.shape[0]):
        window = np.empty(n, dtype=np.float64)
        for f in range(frames.shape[0]):
            offset, height, width = frames[f, 0], frames[f, 1], frames[f, 2]
            for y in range(height):
                for x in range(width):
                    m = 0
                    for dy in range(-half, half + 1):
                        row = offset + _reflect(y + dy, height) * width
                        for dx in range(-half, half + 1):
                            window[m] = maps[t, row + _reflect(x + dx, width)]
                            m += 1
                    if kind == GAUSSIAN:
                        value = 0.0
                        for j in range(n):
                            value += spatial[j] * window[j]
                    else:
                        _sort_small(window, n)
                        value = window[n // 2] if kind == MEDIAN else _rank_gaussian(window, n)
                    out[t, offset + y * width + x] = value
    return out


def _spatial_gaussian(kernel_size: int) -> np.ndarray:
    """Normalised k x k Gaussian weights (row-major) with OpenCV's default sigma."""
    sigma = opencv_gaussian_sigma(kernel_size)
    d = np.arange(kernel_size) - kernel_size // 2
    g = np.exp(-(d**2) / (2 * sigma**2))
    weights = np.outer(g, g).ravel()
    return weights / weights.sum()


def filter_maps(maps: np.ndarray, frames: np.ndarray, name: str = "rank-gaussian", kernel_size: int = 3) -> np.ndarray:
    """Apply filter `name` to each frame of each map.

    maps: [T, V] float; frames: [F, 3] int64 rows (offset into V, H, W) covering V.
    Returns float32 [T, V]. "none" returns the maps unchanged (as float32).
    """
    kind = FILTERS[check_filter_name(name)]
    k = check_kernel_size(kernel_size)
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if kind < 0 or maps.size == 0:
        return maps.copy()
    frames = np.ascontiguousarray(frames, dtype=np.int64).reshape(-1, 3)
    return _filter_frames(maps, frames, k, kind, _spatial_gaussian(k))


def filter_grid(grid: np.ndarray, name: str = "rank-gaussian", kernel_size: int = 3) -> np.ndarray:
    """Filter one 2-D map [H, W]; returns float32 [H, W]."""
    grid = np.asarray(grid)
    if grid.ndim != 2:
        raise TamxError(f"filter_grid takes a 2-D [H, W] array, got shape {grid.shape}")
    frames = np.array([[0, grid.shape[0], grid.shape[1]]])
    return filter_maps(grid.reshape(1, -1), frames, name, kernel_size).reshape(grid.shape)
