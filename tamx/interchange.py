"""Single-sample interchange as safetensors (tensor names in docs/store.md).

The tensors are the array fields of SAMPLE_FIELDS and MAPS_FIELDS (tamx.records) under their
interchange names, plus the vision blocks as `vision_starts` [B] and `vision_grids` [B, 3]
(and `vision_boxes` [B, 4] when every block has a box); the JSON fields travel as metadata
under the key "tamx". Values keep their dtype: bfloat16 hidden states and LM-head rows are
written as safetensors BF16 and read back as the same bits.

The file format (8-byte header length, JSON header, data) is read and written here so that
BF16 needs no torch and every lie a file can tell is named: wrong dtypes, shapes, offsets.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .dtypes import STORAGE_DTYPES, encode_dtype, to_float32
from .errors import SampleError, TamxError
from .fields import SCHEMA, arrays, check_json, json_field, json_fields, stored_json
from .layout import grid_boxes, with_grid_boxes
from .records import (
    BLOCK_KEYS,
    MAPS_FIELDS,
    SAMPLE_FIELDS,
    Maps,
    RunInfo,
    Sample,
    VisionBlock,
    block_json_problem,
    check_name,
    check_sample_id,
    sample_dims,
    sample_from_values,
    sample_values,
)

log = logging.getLogger(__name__)

# safetensors dtype tag -> numpy dtype (BF16 as its uint16 bits)
ST_DTYPES = {
    "F64": np.dtype("float64"),
    "F32": np.dtype("float32"),
    "F16": np.dtype("float16"),
    "BF16": np.dtype("uint16"),
    "I64": np.dtype("int64"),
    "I32": np.dtype("int32"),
    "I16": np.dtype("int16"),
    "I8": np.dtype("int8"),
    "U64": np.dtype("uint64"),
    "U32": np.dtype("uint32"),
    "U16": np.dtype("uint16"),
    "U8": np.dtype("uint8"),
    "BOOL": np.dtype("bool"),
}
_TAG_OF = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}  # model dtype -> tag
_MODEL_OF = {tag: name for name, tag in _TAG_OF.items()}
VISION_TENSORS = ("vision_starts", "vision_grids", "vision_boxes", "vision_grid_blocks")
KNOWN_TENSORS = {f.tensor_name for f in arrays(SAMPLE_FIELDS) + arrays(MAPS_FIELDS)} | set(VISION_TENSORS)
KNOWN_METADATA = {f.name for f in json_fields(SAMPLE_FIELDS)} | {
    "format",
    "schema_version",
    "schema_minor",
    "sample_id",
    "run",
    "maps",
}
REQUIRED = (*tuple(f.tensor_name for f in arrays(SAMPLE_FIELDS) if f.required), "vision_starts", "vision_grids")


# ---------------------------------------------------------------------------- the file format


def safetensors_bytes(tensors: dict[str, tuple[str, np.ndarray]], metadata: dict[str, str]) -> bytes:
    """{name: (dtype tag, array)} and string metadata as the bytes of a safetensors file (the
    stages write them: `tamx.pipeline.files.write_bytes`)."""
    header: dict[str, Any] = {"__metadata__": metadata}
    offset, blobs = 0, []
    for name, (tag, value) in tensors.items():
        data = np.ascontiguousarray(value, dtype=ST_DTYPES[tag].newbyteorder("<")).tobytes()
        header[name] = {"dtype": tag, "shape": list(value.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return b"".join([len(text).to_bytes(8, "little"), text, *blobs])


class InterchangeError(TamxError):
    """A safetensors file cannot be read or imported: names the file once, then the problem
    (`problem`: the message without the file, for reports that list the file beside it)."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):
        return type(self), (self.path, self.problem)


MAX_HEADER = 100_000_000  # bytes: the safetensors format's own limit
_PRODUCE = "produce one with `tamx export` or `tamx.interchange.sample_bytes`"


def _header_entry(name: str, entry: Any) -> tuple[str, list[int], int, int] | str:
    """(dtype tag, shape, start, stop) of one header entry, or why it is malformed."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        return "is not an object of dtype, shape and data_offsets"
    tag, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if tag not in ST_DTYPES:
        return f"has dtype {tag!r}; tamx reads {', '.join(ST_DTYPES)}"

    def whole(values: Any, length: int | None = None) -> bool:
        return (
            isinstance(values, list)
            and (length is None or len(values) == length)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
        )

    if not whole(shape):
        return f"has shape {shape!r}, not a list of sizes >= 0"
    if not whole(offsets, 2) or offsets[0] > offsets[1]:
        return f"has data_offsets {offsets!r}, not [start, stop] with 0 <= start <= stop"
    return tag, shape, offsets[0], offsets[1]


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, str]]:
    """{name: (dtype tag, array)} and the metadata of a safetensors file; InterchangeError,
    naming the file and the lie, when it is not one or is damaged."""

    def not_safetensors(why: str) -> InterchangeError:
        return InterchangeError(path, f"not a safetensors file ({why}): {_PRODUCE}")

    def damaged(why: str) -> InterchangeError:
        return InterchangeError(path, f"a damaged safetensors file ({why}); copy or write it again")

    try:
        with open(path, "rb") as file:
            start = file.read(9)  # the header length, then the header's opening brace
            if len(start) < 9 or start[8:9] != b"{":
                why = "empty" if not start else "it does not begin with a header length and a JSON header"
                raise not_safetensors(why)
            size = int.from_bytes(start[:8], "little")
            total = os.fstat(file.fileno()).st_size
            if size < 2:
                raise damaged(f"its header length reads {size} bytes, too short for a JSON object")
            if size > MAX_HEADER:
                raise damaged(f"its header length reads {size} bytes, over the format's limit of {MAX_HEADER}")
            if size > total - 8:
                raise damaged(f"its header of {size} bytes runs past the end of the file: cut short?")
            text = start[8:] + file.read(size - 1)
            data = memoryview(file.read())
    except OSError as exc:
        raise InterchangeError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(f"its header is not UTF-8 JSON: {exc}") from None
    except _DuplicateKey as exc:
        raise damaged(f"its header names {exc.args[0]!r} twice") from None
    if not isinstance(header, dict):
        raise damaged("its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise damaged("its __metadata__ must map names to strings")
    tensors, spans = {}, []
    for name, entry in header.items():
        parsed = _header_entry(name, entry)
        if isinstance(parsed, str):
            raise damaged(f"tensor {name!r} {parsed}")
        tag, shape, begin, end = parsed
        dtype = ST_DTYPES[tag]
        if end > len(data):
            raise damaged(f"tensor {name!r} lies outside the file (offsets {begin}..{end} of {len(data)})")
        if end - begin != math.prod(shape) * dtype.itemsize:
            raise damaged(f"tensor {name!r}: {end - begin} bytes for shape {shape} {tag}")
        value = np.frombuffer(data[begin:end], dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
        tensors[name] = (tag, value.reshape(shape))
        spans.append((begin, end, name))
    stop = 0  # the format's rule: the tensors' bytes follow one another, no gap, no overlap
    for begin, end, name in sorted(spans):
        if begin != stop:
            raise damaged(
                f"tensor {name!r} starts at byte {begin}, not {stop}: its bytes overlap another's or leave a gap"
            )
        stop = end
    if stop != len(data):
        raise damaged(f"{len(data) - stop} bytes after the last tensor")
    return tensors, metadata


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict, refusing a key given twice (the last would hide the first)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return out


# ---------------------------------------------------------------------------- export


def _vision_tensors(blocks: tuple[VisionBlock, ...]) -> dict[str, tuple[str, np.ndarray]]:
    boxes, owners = grid_boxes(blocks)
    return {
        "vision_starts": ("I64", np.array([b.start for b in blocks], dtype=np.int64)),
        "vision_grids": ("I64", np.array([b.grid for b in blocks], dtype=np.int64).reshape(-1, 3)),
        "vision_boxes": ("F64", boxes),  # one row per mapped grid (a block, or each tile of one)
        "vision_grid_blocks": ("I64", owners),
    }


def _tag(f, values: dict[str, Any], value: np.ndarray) -> str:
    if f.dtype.startswith("@"):
        return _TAG_OF[values[f.dtype[1:]]]
    return {"int64": "I64", "float32": "F32", "uint8": "U8"}[value.dtype.name]


def sample_bytes(sample: Sample, info: RunInfo, maps: Maps | None = None) -> bytes:
    """One sample (and optionally one maps variant) as the bytes of a safetensors file, dtypes
    kept (`tamx.pipeline.interchange.export_sample` writes them)."""
    values = sample_values(sample)
    tensors: dict[str, tuple[str, np.ndarray]] = {}
    for f in arrays(SAMPLE_FIELDS):
        if values.get(f.name) is not None:
            tensors[f.tensor_name] = (_tag(f, values, values[f.name]), values[f.name])
    tensors.update(_vision_tensors(sample.vision_blocks))
    for index, _ in enumerate(sample.media):
        tensors[f"media.{index}"] = ("U8", values[f"media.{index}"])
    meta: dict[str, Any] = {
        "format": "tamx-sample",
        "schema_version": SCHEMA[0],
        "schema_minor": SCHEMA[1],
        "sample_id": sample.id,
        "run": info.to_json(),
        **stored_json(SAMPLE_FIELDS, values),
    }
    if maps is not None:
        maps_values = maps.values()
        for f in arrays(MAPS_FIELDS):
            if maps_values.get(f.name) is not None:
                tensors[f.tensor_name] = ("F32", maps_values[f.name])
        meta["maps"] = {"variant": maps.variant, **{f.name: maps_values[f.name] for f in json_fields(MAPS_FIELDS)}}
    return safetensors_bytes(tensors, {"tamx": json.dumps(meta)})


# ---------------------------------------------------------------------------- import


def _id_from_filename(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", path.stem).lstrip(".-") or "sample"
    return stem[:200]


def _lossless_in(values: np.ndarray, dtype: str) -> bool:
    """Whether float32 `values` survive a round trip through `dtype` unchanged."""
    return np.array_equal(to_float32(encode_dtype(values, dtype), dtype), values, equal_nan=True)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The tamx JSON metadata of a safetensors file ({} when it has none)."""
    _, metadata = read_safetensors(path)
    try:
        return _tamx_metadata(metadata)
    except TamxError as exc:
        raise InterchangeError(path, str(exc)) from None


def _tamx_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    raw = metadata.get("tamx")
    if not raw:
        return {}
    try:
        meta = json.loads(raw, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise TamxError(
            f"its 'tamx' metadata is not JSON ({exc}); write it as one JSON object (docs/store.md)"
        ) from None
    except _DuplicateKey as exc:
        raise TamxError(f"its 'tamx' metadata names {exc.args[0]!r} twice; keep one") from None
    if not isinstance(meta, dict):
        raise TamxError(
            f"its 'tamx' metadata is a JSON {type(meta).__name__}, not an object; write it as one JSON object "
            "(docs/store.md)"
        )
    return meta


# The metadata a file may carry under "tamx": the envelope, then the sample table's JSON fields
# (optional here: a file without them takes them from its tensors and name).
METADATA_FIELDS = (
    json_field("format", str, required=False),
    json_field("schema_version", int, required=False),
    json_field("schema_minor", int, required=False),
    json_field("sample_id", str, required=False),
    json_field("run", dict, required=False),
    json_field("maps", dict, required=False),
    *(dataclasses.replace(f, required=False) for f in json_fields(SAMPLE_FIELDS)),
)


class _Reader:
    """Turns the tensors of one file into field values, naming the sample and tensor at fault."""

    def __init__(self, sample_id: str, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
        self.sample_id, self.tensors = sample_id, tensors

    def fail(self, name: str, problem: str) -> NoReturn:
        raise SampleError(self.sample_id, name, problem)

    def ints(self, name: str, ndim: int) -> np.ndarray:
        tag, value = self.tensors[name]
        if value.dtype.kind not in "iu":
            self.fail(name, f"must hold integers, got {tag}; write it as int64")
        if value.ndim != ndim:
            self.fail(name, f"must be {ndim}-D, got shape {list(value.shape)}")
        if value.dtype == np.uint64 and value.size and value.max() > np.iinfo(np.int64).max:
            self.fail(name, "holds values past int64")
        return value.astype(np.int64, copy=False)

    def floats(self, name: str, dtype: type = np.float32) -> np.ndarray:
        tag, value = self.tensors[name]
        if tag not in ("F32", "F16", "BF16", "F64"):
            self.fail(name, f"must hold floats (F32, F16 or BF16), got {tag}")
        return (to_float32(value, "bfloat16") if tag == "BF16" else value).astype(dtype, copy=False)

    def model_dtype(self, key: str, named: str | None, name: str, *others: str) -> tuple[str, list[np.ndarray]]:
        """The stored dtype of `name` (and of `others`, which share it) and their values in it.

        BF16/F16/F32 tensors keep their dtype; float32 values that the exporter named another
        dtype for (files of tamx 0.1) are restored to it when that is lossless. A BF16 or F16
        tensor that the metadata's `key` names another dtype for is refused: one of them lies."""
        names = [name, *[o for o in others if o in self.tensors]]
        tags = {self.tensors[n][0] for n in names}
        for n in names:
            self.floats(n)  # kinds checked
            if self.tensors[n][0] == "F64":  # no model computes in it: narrowing would lose bits unseen
                self.fail(n, "is F64; write it in the model's dtype (F32, F16 or BF16)")
        if len(tags) == 1 and (tag := tags.pop()) in _MODEL_OF:
            dtype = _MODEL_OF[tag]
            if named is not None and dtype != "float32" and named != dtype:
                self.fail(key, f"is {named!r} but tensor {name!r} is stored as {tag}; make them agree")
            if dtype == "float32" and named in STORAGE_DTYPES and named != "float32":
                floats = [self.tensors[n][1] for n in names]
                if all(_lossless_in(v, named) for v in floats):
                    return named, [encode_dtype(v, named) for v in floats]
            return dtype, [self.tensors[n][1] for n in names]
        return "float32", [self.floats(n) for n in names]


def _blocks(reader: _Reader, described: list[Any] | None) -> list[dict[str, Any]]:
    """The vision blocks as JSON: start and grid from the tensors, the rest from the metadata's
    `vision_blocks`. A block the metadata does not place (no `media`) is its own image or
    video: ECI solves one scale per item (docs/method.md, Eq. 5), so grids are never merged
    into one item unless the file says so."""
    starts = reader.ints("vision_starts", 1)
    grids = reader.ints("vision_grids", 2) if reader.tensors["vision_grids"][1].size else np.zeros((0, 3), np.int64)
    if grids.shape[1:] != (3,):
        reader.fail("vision_grids", f"must be [B, 3] (T, H, W per block), got shape {list(grids.shape)}")
    if len(starts) != len(grids):
        reader.fail("vision_grids", f"{len(grids)} grids for {len(starts)} vision_starts")
    described = described or []
    if not all(isinstance(d, dict) for d in described):
        reader.fail("vision_blocks", "the metadata's vision_blocks must be a list of objects")
    if len(described) > len(starts):
        reader.fail("vision_blocks", f"the metadata describes {len(described)} blocks for {len(starts)} vision_starts")
    blocks = []
    for index, (start, grid) in enumerate(zip(starts.tolist(), grids.tolist())):
        extra = described[index] if index < len(described) else {}
        problem = block_json_problem(extra)
        if problem is not None:
            reader.fail("vision_blocks", f"block {index}: {problem}")
        for key, tensor, value in (("start", "vision_starts", start), ("grid", "vision_grids", grid)):
            if key in extra and extra[key] != value:
                reader.fail(tensor, f"says {value} for block {index}, its metadata {extra[key]!r}; make them agree")
        blocks.append(
            {**extra, "start": start, "grid": grid, "kind": extra.get("kind", "video" if grid[0] > 1 else "image")}
        )
    free: dict[str, int] = {}  # kind -> the first media index after those the file places
    for block in blocks:
        if "media" in block:
            free[block["kind"]] = max(free.get(block["kind"], 0), block["media"] + 1)
    for block in blocks:
        if "media" not in block:
            block["media"] = free.get(block["kind"], 0)
            free[block["kind"]] = block["media"] + 1
    try:
        parsed = [VisionBlock.from_json(b) for b in blocks]
    except (KeyError, TypeError, ValueError) as exc:
        reader.fail("vision_blocks", f"the metadata's vision blocks are not valid ({type(exc).__name__}: {exc})")
    if "vision_boxes" not in reader.tensors:  # the blocks' JSON boxes, else the whole image (assumed)
        return blocks
    boxes = reader.floats("vision_boxes", np.float64)  # pixels: F64 kept, never rounded to float32
    if boxes.ndim != 2 or boxes.shape[1:] != (4,):
        reader.fail("vision_boxes", f"must be [G, 4] (x0, y0, x1, y1 per grid), got shape {list(boxes.shape)}")
    owners = reader.ints("vision_grid_blocks", 1) if "vision_grid_blocks" in reader.tensors else np.arange(len(boxes))
    try:
        return [b.to_json() for b in with_grid_boxes(parsed, boxes, owners)]
    except ValueError as exc:
        reader.fail("vision_boxes", str(exc))


def _media(reader: _Reader, entries: list[Any]) -> dict[str, np.ndarray]:
    """The bytes of every media entry, "media.<i>" -> U8 [bytes]; an entry without its tensor is
    refused rather than dropped (a tensor without its entry is warned about as unknown)."""
    for index in range(len(entries)):
        name = f"media.{index}"
        if name not in reader.tensors:
            reader.fail(name, f"media entry {index} has no bytes; add the tensor {name} (U8) or drop the entry")
        tag, data = reader.tensors[name]
        if tag != "U8" or data.ndim != 1:
            reader.fail(name, f"must be the encoded image as U8 bytes, got {tag} {list(data.shape)}")
    return {f"media.{index}": reader.tensors[f"media.{index}"][1] for index in range(len(entries))}


def _is_media(name: str) -> bool:
    return name.startswith("media.") and name[6:].isdigit() and name == f"media.{int(name[6:])}"


def import_sample(path: str | os.PathLike) -> tuple[Sample, RunInfo, Maps | None]:
    """Read one sample file written by `export_sample` or by hand (required tensors only).

    The whole file is checked before anything is returned: every tensor and metadata entry
    against the field tables, the sample id and maps variant against the naming rule, the
    maps against the sample. An InterchangeError names the file, then the sample, the field
    and the fix."""
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    try:
        return _import(path, tensors, _tamx_metadata(metadata))
    except TamxError as exc:
        raise InterchangeError(path, str(exc)) from None


def _import(
    path: Path, tensors: dict[str, tuple[str, np.ndarray]], meta: dict[str, Any]
) -> tuple[Sample, RunInfo, Maps | None]:
    named = meta.get("sample_id")
    sample_id = named if isinstance(named, str) else _id_from_filename(path)
    reader = _Reader(sample_id, tensors)
    check_json(METADATA_FIELDS, meta, reader.fail, "metadata")
    if meta.get("format", "tamx-sample") != "tamx-sample":
        reader.fail("format", f"is {meta['format']!r}, not 'tamx-sample': this file holds no tamx sample")
    version = meta.get("schema_version", SCHEMA[0])
    if version > SCHEMA[0]:
        reader.fail(
            "schema_version", f"was written with schema {version!r}; this tamx reads schema {SCHEMA[0]} and older"
        )
    for key in ("hidden_dtype", "lm_head_dtype"):
        if meta.get(key) is not None and meta[key] not in STORAGE_DTYPES:
            reader.fail(key, f"is {meta[key]!r}, not one of {sorted(STORAGE_DTYPES)}; name the stored dtype")
    check_sample_id(sample_id, portable=True)
    missing = [name for name in REQUIRED if name not in tensors]
    if missing:
        reader.fail(missing[0], f"lacks required tensor(s) {', '.join(missing)}")

    described = len(meta.get("media") or [])
    ignored = sorted(
        name for name in tensors if name not in KNOWN_TENSORS and not (_is_media(name) and int(name[6:]) < described)
    ) + sorted(set(meta) - KNOWN_METADATA)
    blocks = meta.get("vision_blocks") or []
    ignored += [
        f"vision_blocks[{i}].{k}" for i, b in enumerate(blocks) if isinstance(b, dict) for k in b if k not in BLOCK_KEYS
    ]
    if meta.get("maps") and not any(f.tensor_name in tensors for f in arrays(MAPS_FIELDS)):
        ignored.append("maps (no maps tensors)")
    if ignored:
        log.warning("%s: tensor(s) or metadata %s are not known to this tamx and are ignored", path, ", ".join(ignored))
    values: dict[str, Any] = {f.name: meta.get(f.name) for f in json_fields(SAMPLE_FIELDS)}
    values["vision_blocks"] = _blocks(reader, meta.get("vision_blocks"))
    values["hidden_dtype"], (values["hidden"],) = reader.model_dtype("hidden_dtype", meta.get("hidden_dtype"), "hidden")
    values["lm_head_dtype"], head = reader.model_dtype(
        "lm_head_dtype", meta.get("lm_head_dtype"), "lm_head_rows", "lm_head_bias"
    )
    values["lm_head_rows"] = head[0]
    values["lm_head_bias"] = head[1] if len(head) > 1 else None
    for f in arrays(SAMPLE_FIELDS):
        if f.name in values or f.tensor_name not in tensors:
            continue
        if f.dtype == "int64":
            values[f.name] = reader.ints(f.tensor_name, len(f.shape))
        else:
            values[f.name] = reader.floats(f.tensor_name)
    values.update(_media(reader, values.get("media") or []))
    sample = sample_from_values(sample_id, values)
    info = RunInfo.from_json(meta.get("run") or {}, where="the 'run' metadata")
    sample.validate(info.special_tokens)
    return sample, info, _import_maps(reader, sample, meta.get("maps") or {})


def _import_maps(reader: _Reader, sample: Sample, described: dict[str, Any]) -> Maps | None:
    """The maps variant a file carries, if any, checked against MAPS_FIELDS and the sample."""
    present = {f.name: f.tensor_name for f in arrays(MAPS_FIELDS) if f.tensor_name in reader.tensors}
    if not present:
        return None
    values: dict[str, Any] = {"settings": {}, **{k: v for k, v in described.items() if k != "variant"}}
    check_json(MAPS_FIELDS, values, reader.fail, "maps metadata")
    values.update({name: reader.floats(tensor) for name, tensor in present.items()})
    variant = described.get("variant", "imported")
    if not isinstance(variant, str):
        reader.fail("maps", f"the variant name must be a string, got {variant!r}")
    try:
        check_name(variant, "variant name")
    except TamxError as exc:
        reader.fail("maps", str(exc))
    lacking = [f.tensor_name for f in arrays(MAPS_FIELDS) if f.required and f.name not in present]
    if lacking:
        reader.fail(lacking[0], f"maps are partial: {', '.join(lacking)} missing")
    return Maps.from_values(variant, values, sample.id, sample_dims(sample))
