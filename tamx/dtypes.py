"""Lossless storage of model dtypes in numpy: bfloat16 is kept as its raw uint16 bits."""

from __future__ import annotations

import numpy as np

from .errors import TamxError

# Stored numpy dtype for every model dtype the store accepts.
STORAGE_DTYPES = {
    "float32": np.dtype("float32"),
    "float16": np.dtype("float16"),
    "bfloat16": np.dtype("uint16"),
}


def check_dtype_name(name: str) -> str:
    """Return `name` if it is a dtype the store accepts, else raise with the valid names."""
    if name not in STORAGE_DTYPES:
        raise TamxError(f"unknown dtype {name!r}; use one of {sorted(STORAGE_DTYPES)}")
    return name


def to_float32(values: np.ndarray, dtype_name: str) -> np.ndarray:
    """Decode stored values (bf16 bits, fp16 or fp32) into a float32 array of the same shape."""
    check_dtype_name(dtype_name)
    if dtype_name == "bfloat16":
        return np.left_shift(np.asarray(values, dtype=np.uint16), 16, dtype=np.uint32).view(np.float32)
    return np.asarray(values, dtype=np.float32)


def bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest, ties to even) and return the uint16 bits."""
    as_int = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    is_nan = np.isnan(np.asarray(values, dtype=np.float32))
    rounding = ((as_int >> 16) & 1) + 0x7FFF
    bits = ((as_int + rounding) >> 16).astype(np.uint16)
    bits[is_nan] = 0x7FC0
    return bits


def encode_dtype(values: np.ndarray, dtype_name: str) -> np.ndarray:
    """Convert float values to the stored representation of `dtype_name`."""
    check_dtype_name(dtype_name)
    if dtype_name == "bfloat16":
        return bfloat16_bits(values)
    return np.asarray(values, dtype=STORAGE_DTYPES[dtype_name])
