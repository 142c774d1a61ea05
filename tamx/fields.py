"""Field tables: the one description of each record's fields that the run store and the
safetensors interchange both read, write and validate against (docs/store.md lists them).

A `Field` is an array (dtype on disk, symbolic shape such as ("L-1", "C")) or a JSON value
(its Python types). `check_arrays` binds the symbolic dimensions as it meets them, so shapes
are checked against each other as well as against the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .dtypes import STORAGE_DTYPES

SCHEMA = (2, 0)  # (major, minor): a reader opens every minor version of its major


@dataclass(frozen=True)
class Field:
    """One field of a record.

    kind: "array" or "json". dtype: a numpy dtype name, or "@key" for the model dtype named by
    the JSON field `key` (bfloat16 stored as uint16 bits). shape: symbolic dimensions (a name,
    "NAME-1" or an int). types: the JSON types a "json" field may hold (None allowed when
    optional). tensor: the interchange tensor name when it is not `name`. since: the schema
    version that added the field. fix: what the user should do when the field is wrong.
    """

    name: str
    kind: str = "array"
    dtype: str = ""
    shape: tuple[str | int, ...] = ()
    required: bool = True
    types: tuple[type, ...] = ()
    tensor: str | None = None
    since: tuple[int, int] = SCHEMA
    fix: str = ""

    @property
    def tensor_name(self) -> str:
        return self.tensor or self.name


def array(name: str, dtype: str, shape: tuple[str | int, ...], required: bool = True, **kw: Any) -> Field:
    return Field(name, "array", dtype, shape, required, **kw)


def json_field(name: str, *types: type, required: bool = True, **kw: Any) -> Field:
    return Field(name, "json", required=required, types=types, **kw)


def arrays(fields: tuple[Field, ...]) -> tuple[Field, ...]:
    return tuple(f for f in fields if f.kind == "array")


def json_fields(fields: tuple[Field, ...]) -> tuple[Field, ...]:
    return tuple(f for f in fields if f.kind == "json")


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number", bool: "a bool"}


def _type_text(types: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def check_json(
    fields: tuple[Field, ...], values: Mapping[str, Any], fail: Callable[[str, str], None], what: str
) -> None:
    """Check the JSON fields of a record: present when required, of the table's types."""
    for f in json_fields(fields):
        value = values.get(f.name)
        if value is None:
            if f.required:
                fail(f.name, f"is missing from the {what}{'; ' + f.fix if f.fix else ''}")
            continue
        ok = isinstance(value, f.types) and not (isinstance(value, bool) and bool not in f.types)
        if not ok:
            fail(f.name, f"must be {_type_text(f.types)}, got {type(value).__name__} {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def dtype_of(f: Field, values: Mapping[str, Any]) -> np.dtype:
    """The on-disk numpy dtype of an array field (resolving "@key" through the model dtype)."""
    if f.dtype.startswith("@"):
        return STORAGE_DTYPES[values[f.dtype[1:]]]
    return np.dtype(f.dtype)


def _dim(symbol: str | int, dims: dict[str, int]) -> tuple[str, int | None]:
    """(symbol's base name, expected size or None when not yet bound)."""
    if isinstance(symbol, int):
        return str(symbol), symbol
    base, _, minus = symbol.partition("-")
    bound = dims.get(base)
    return base, None if bound is None else bound - int(minus or 0)


def check_arrays(
    fields: tuple[Field, ...],
    values: Mapping[str, Any],
    fail: Callable[[str, str], None],
    dims: dict[str, int] | None = None,
) -> dict[str, int]:
    """Check every array field's presence, dtype and shape against the table; return the dims.

    `values` maps names to arrays (or None) and holds the JSON fields "@key" dtypes refer to.
    Dimensions are bound by the first field that uses them (or by `dims`) and every later use
    must agree, so [L-1, C] hidden states are checked against [L] input ids.
    """
    dims = dict(dims or {})
    for f in arrays(fields):
        value = values.get(f.name)
        if value is None:
            if f.required:
                fail(f.name, f"is required but missing{'; ' + f.fix if f.fix else ''}")
            continue
        if not isinstance(value, np.ndarray):
            fail(f.name, f"must be an array, got {type(value).__name__}")
        want = dtype_of(f, values)
        if value.dtype != want:
            fail(f.name, f"must hold {want} values, got {value.dtype}{'; ' + f.fix if f.fix else ''}")
        if value.ndim != len(f.shape):
            fail(f.name, f"must be {len(f.shape)}-D [{', '.join(map(str, f.shape))}], got shape {list(value.shape)}")
        for axis, symbol in enumerate(f.shape):
            base, expected = _dim(symbol, dims)
            size = value.shape[axis]
            if expected is None:
                minus = int(str(symbol).partition("-")[2] or 0)
                dims[base] = size + minus
            elif size != expected:
                names = ", ".join(map(str, f.shape))
                fail(f.name, f"must be [{names}] with {symbol} = {expected}, got shape {list(value.shape)}")
    return dims


def unknown(fields: tuple[Field, ...], names: set[str] | list[str]) -> list[str]:
    """The names a newer writer stored that this table does not know (sorted)."""
    known = {f.name for f in fields}
    return sorted(set(names) - known)
