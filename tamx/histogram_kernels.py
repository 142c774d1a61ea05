"""Histograms of uint8 maps and their Otsu threshold, with how clearly it won (numba kernels).

`tamx.metrics` scores a map from its histogram (threshold, foreground and background counts)
instead of binarising its pixels. OpenCV's Otsu (`cv2.threshold(..., THRESH_OTSU)`, which the
scores are defined by) runs Intel IPP's kernel in the opencv-python wheels, whose rounding differs
from OpenCV's own loop: on exact or near ties of the between-class variance (a three-valued
image, say) the two pick different thresholds. So this returns the best and the runner-up
variance as well; `tamx.metrics` takes the threshold only when it won by a clear margin and asks
OpenCV otherwise. Imported only when eval needs it: numba's import costs start-up.
"""

from __future__ import annotations

import numba
import numpy as np

_FLT_EPSILON = float(np.finfo(np.float32).eps)


@numba.njit(cache=True)
def otsu_histogram(hist: np.ndarray) -> tuple[float, float, float]:
    """(threshold 0..255, its between-class variance, the largest variance of any other
    threshold) of a 256-bin histogram of int64 counts (total > 0), OpenCV's loop step for step."""
    total = 0
    for i in range(256):
        total += hist[i]
    scale = 1.0 / float(total)
    mu = 0.0
    for i in range(256):
        mu += i * float(hist[i])
    mu *= scale
    mu1 = 0.0
    q1 = 0.0
    max_sigma = 0.0
    second = 0.0
    max_val = 0.0
    for i in range(256):
        p_i = hist[i] * scale
        mu1 *= q1
        q1 += p_i
        q2 = 1.0 - q1
        if min(q1, q2) < _FLT_EPSILON or max(q1, q2) > 1.0 - _FLT_EPSILON:
            continue
        mu1 = (mu1 + i * p_i) / q1
        mu2 = (mu - q1 * mu1) / q2
        sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2)
        if sigma > max_sigma:
            second = max_sigma
            max_sigma = sigma
            max_val = float(i)
        elif sigma > second:
            second = sigma
    return max_val, max_sigma, second


@numba.njit(cache=True)
def histogram(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """int64 [256] counts of a 2-D uint8 image's values where the uint8 `mask` (same shape, or
    shape (0, 0) for every pixel) is non-zero; four interleaved tables, so that consecutive
    equal values do not wait on each other."""
    tables = np.zeros((4, 256), dtype=np.int64)
    height, width = image.shape
    masked = mask.shape[0] != 0
    for y in range(height):
        row = image[y]
        j = 0
        if masked:
            keep = mask[y]
            while j + 4 <= width:
                tables[0, row[j]] += keep[j] != 0
                tables[1, row[j + 1]] += keep[j + 1] != 0
                tables[2, row[j + 2]] += keep[j + 2] != 0
                tables[3, row[j + 3]] += keep[j + 3] != 0
                j += 4
            while j < width:
                tables[0, row[j]] += keep[j] != 0
                j += 1
        else:
            while j + 4 <= width:
                tables[0, row[j]] += 1
                tables[1, row[j + 1]] += 1
                tables[2, row[j + 2]] += 1
                tables[3, row[j + 3]] += 1
                j += 4
            while j < width:
                tables[0, row[j]] += 1
                j += 1
    return tables[0] + tables[1] + tables[2] + tables[3]
