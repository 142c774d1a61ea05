"""Stored rows (bf16 bits, fp16, fp32) gathered into float32 for explain, in one pass.

Explain needs nearly every hidden state of a sample as float32 with NaN/Inf set to 0 and
counted. In numpy that is a gather, a decode, a finiteness mask and a count: four passes and
three temporaries of the sample's size. For bfloat16, the usual stored dtype, one numba kernel
does it in one pass, without the GIL (`tamx serve` explains on threads).
"""

from __future__ import annotations

import numba
import numpy as np

from .dtypes import check_dtype_name, to_float32

_EXPONENT = np.uint32(0x7F800000)  # float32 exponent bits: all set for Inf and NaN


@numba.njit(cache=True, nogil=True)
def _gather_bfloat16(bits: np.ndarray, index: np.ndarray, out: np.ndarray) -> int:
    """out[i] = bits[index[i]] as float32 bits (bf16 << 16), non-finite values 0; their count."""
    bad = 0
    for i in range(index.shape[0]):
        source = index[i]
        for j in range(bits.shape[1]):
            value = np.uint32(bits[source, j]) << np.uint32(16)
            if value & _EXPONENT == _EXPONENT:
                bad += 1
                value = np.uint32(0)
            out[i, j] = value
    return bad


def gather_float32(values: np.ndarray, index: np.ndarray, dtype_name: str) -> tuple[np.ndarray, int]:
    """values[index] ([R, C] stored as `dtype_name`) as float32 [len(index), C], with NaN and Inf
    set to 0, and how many there were."""
    check_dtype_name(dtype_name)
    index = np.ascontiguousarray(index, dtype=np.int64)
    if len(index) and (index.min() < 0 or index.max() >= len(values)):
        raise IndexError(f"row index out of range for {len(values)} rows")
    if dtype_name == "bfloat16" and values.ndim == 2:
        out = np.empty((len(index), values.shape[1]), dtype=np.float32)
        bad = _gather_bfloat16(np.ascontiguousarray(values, dtype=np.uint16), index, out.view(np.uint32))
        return out, int(bad)
    rows = to_float32(values[index], dtype_name)
    finite = np.isfinite(rows)
    bad = int(rows.size - np.count_nonzero(finite))
    return (np.where(finite, rows, 0.0).astype(np.float32) if bad else rows), bad
