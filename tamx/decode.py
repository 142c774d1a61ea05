"""Stored rows (bf16 bits, fp16, fp32) gathered into float32 for explain.

Explain needs nearly every hidden state of a sample as float32 with NaN/Inf set to 0 and
counted. bfloat16, the usual stored dtype, is the top half of a float32: its rows are
gathered, shifted into place and checked in numpy (a numba kernel did it in one pass, 0.4 ms
a sample faster, but numba's import and first call cost `tamx explain` 0.5 s at start-up).
"""

from __future__ import annotations

import numpy as np

from .dtypes import check_dtype_name, to_float32


def gather_float32(values: np.ndarray, index: np.ndarray, dtype_name: str) -> tuple[np.ndarray, int]:
    """values[index] ([R, C] stored as `dtype_name`) as float32 [len(index), C], with NaN and Inf
    set to 0, and how many there were."""
    check_dtype_name(dtype_name)
    index = np.ascontiguousarray(index, dtype=np.int64)
    if len(index) and (index.min() < 0 or index.max() >= len(values)):
        raise IndexError(f"row index out of range for {len(values)} rows")
    rows = to_float32(values[index], dtype_name)  # bfloat16: the bits shifted into a float32
    finite = np.isfinite(rows)
    bad = int(rows.size - np.count_nonzero(finite))
    if bad:
        rows = np.where(finite, rows, np.float32(0.0)).astype(np.float32)
    return rows, bad
