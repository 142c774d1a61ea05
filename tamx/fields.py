"""Field tables: the one description of each record's fields that the run store and the
safetensors interchange both read, write and validate against (docs/store.md lists them).

A `Field` is an array (dtype on disk, symbolic shape such as ("L-1", "C")) or a JSON value
(its Python types). `check_arrays` binds the symbolic dimensions as it meets them, so shapes
are checked against each other as well as against the table.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .dtypes import STORAGE_DTYPES

SCHEMA = (2, 1)  # (major, minor): a reader opens every minor version of its major; 2.1 adds faithfulness
# records and the baselines' sample fields (docs/encode.md, "Baselines")


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
    since: tuple[int, int] = (2, 0)
    fix: str = ""
    attribute: str | None = None

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


def stored_json(fields: tuple[Field, ...], values: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON fields a record stores: every field of schema 2.0 (null where missing, as ever),
    a field added by a later minor version only where present, so that a record without it keeps
    the bytes it had."""
    return {
        f.name: values.get(f.name) for f in json_fields(fields) if f.since <= (2, 0) or values.get(f.name) is not None
    }


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


# ---------------------------------------------------------------------------- conversions
# A record's stored values are derived from its dataclass and its table, so a field whose
# attribute holds a plain value (an array, a string, a list, an object) needs no code at all.


def json_value(value: Any) -> Any:
    """A record value as JSON stores it: a dataclass as an object of its fields in order (leaving
    out those whose `metadata` says json=False), tuples and lists as lists, the rest as is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: json_value(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("json", True)
        }
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value


def record_values(record: Any, fields: tuple[Field, ...]) -> dict[str, Any]:
    """Field name -> the record's value of every field of its table (JSON fields via `json_value`)."""
    values = {}
    for f in fields:
        value = record
        for part in (f.attribute or f.name).split("."):
            value = getattr(value, part)
        values[f.name] = value if f.kind == "array" else json_value(value)
    return values


def record_arguments(cls: type, fields: tuple[Field, ...], values: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of dataclass `cls` for stored field values (checked against the table
    before): each value to its attribute, values under a dotted attribute built into the record
    type the attribute is annotated with; a missing value (None) leaves the attribute's default."""
    hints = typing.get_type_hints(cls)
    arguments: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for f in fields:
        value = values.get(f.name)
        head, _, tail = (f.attribute or f.name).partition(".")
        if tail:
            nested.setdefault(head, {})
            if value is not None:
                nested[head][tail] = value
        elif value is not None:
            arguments[head] = value
    for head, inner in nested.items():
        arguments[head] = hints[head](**inner)
    return arguments


def coerce(hint: Any, value: Any) -> Any:
    """`value` read from JSON converted to the annotated type `hint` (int, float, str, bool, a
    tuple of them, or None where the hint allows it); other values as they are."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return coerce(next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        item = args[0] if (len(args) == 2 and args[1] is Ellipsis) or len(set(args)) == 1 else None
        if item is None:
            return tuple(coerce(a, v) for a, v in zip(args, value, strict=True))
        return tuple(coerce(item, v) for v in value)
    if hint in (int, float, str, bool):
        return hint(value)
    return value


def from_json(cls: type, data: Mapping[str, Any]) -> Any:
    """A dataclass from its JSON object (`json_value`'s inverse): every key converted to its
    attribute's annotated type, a missing key taking the attribute's default (KeyError where it
    has none)."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} is an object, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    arguments = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            arguments[f.name] = coerce(hints[f.name], data[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(f.name)
    return cls(**arguments)
