"""The run store: one zarr v3 folder per run (layout and schema in docs/store.md).

Every chunk is zstd-compressed and crc32c-checksummed. A sample, a maps variant and an
LM-head pack are each written aside under `staging/` and renamed into place, so a reader
never sees half of one and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from .errors import SampleError, StoreError
from .records import (
    MAPS_ARRAYS,
    MAPS_OPTIONAL,
    SCHEMA_VERSION,
    LMHead,
    Maps,
    Media,
    RunInfo,
    Sample,
    VisionBlock,
    check_name,
    check_sample_id,
    name_problem,
)

ATTRS_KEY = "tamx"
CHUNK_BYTES = 8 << 20
PACK_CACHE_BYTES = 256 << 20  # LM-head packs kept in memory per opened run
_COMPRESSORS = (ZstdCodec(level=3), Crc32cCodec())
SAMPLE_ARRAYS = ("hidden", "input_ids", "answer_positions", "context_positions")
SAMPLE_OPTIONAL = ("candidate_ids", "candidate_logprobs", "answer_logprobs")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """One chunk for small arrays; chunks of whole rows of at most CHUNK_BYTES otherwise."""
    if not shape:
        return ()
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    rows = max(1, min(shape[0], CHUNK_BYTES // row_bytes))
    return (rows, *(max(1, d) for d in shape[1:]))


def _write_array(group: zarr.Group, name: str, data: np.ndarray) -> None:
    data = np.ascontiguousarray(data)
    array = group.create_array(
        name,
        shape=data.shape,
        dtype=data.dtype,
        chunks=_chunks(data.shape, data.dtype.itemsize),
        compressors=_COMPRESSORS,
        config={"write_empty_chunks": True},
    )
    if data.size:
        array[...] = data


def _read_array(group: zarr.Group, name: str, sample_id: str) -> np.ndarray:
    """Read a whole array, turning damage (missing chunk, checksum) into a SampleError."""
    try:
        array = group[name]
        if array.nchunks_initialized < array.nchunks:
            raise SampleError(
                sample_id,
                name,
                f"{array.nchunks - array.nchunks_initialized} of {array.nchunks} chunk(s) are "
                "missing; the store is damaged: re-encode or re-import this sample",
            )
        return np.asarray(array[...])
    except SampleError:
        raise
    except KeyError:
        raise SampleError(sample_id, name, "the array is missing from the store") from None
    except (ValueError, OSError, RuntimeError) as exc:
        raise SampleError(
            sample_id,
            name,
            f"cannot be read ({exc}); the chunk is truncated or corrupted: re-encode or re-import this sample",
        ) from None


def _open_group(path: Path, sample_id: str, what: str) -> zarr.Group:
    try:
        return zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, ValueError, OSError, json.JSONDecodeError) as exc:
        raise SampleError(sample_id, what, f"cannot open {path} ({exc})") from None


def _replace_dir(staged: Path, final: Path, trash: Path) -> None:
    """Atomically move `staged` to `final`, replacing any existing `final`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(final, trash)
        os.rename(staged, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staged, final)


class Run:
    """An opened run store. Use `open_run` or `create_run` rather than this constructor."""

    def __init__(self, path: str | os.PathLike, writable: bool = False) -> None:
        self.path = Path(path)
        self.writable = writable
        root_json = self.path / "zarr.json"
        if not root_json.is_file():
            raise StoreError(
                f"{self.path} is not a tamx run store (no zarr.json); create one with `tamx encode` or `tamx import`"
            )
        try:
            attrs = json.loads(root_json.read_text())["attributes"][ATTRS_KEY]
        except (KeyError, json.JSONDecodeError) as exc:
            raise StoreError(f"{self.path} is a zarr store but not a tamx run ({exc!r} missing)") from None
        version = attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {version}, this tamx reads version "
                f"{SCHEMA_VERSION}; use the tamx release that wrote it, or re-encode the run"
            )
        self.attrs: dict[str, Any] = attrs
        self.info = RunInfo.from_json(attrs.get("run", {}))
        self._pack_index: dict[int, str] | None = None
        self._packs: OrderedDict[str, LMHead] = OrderedDict()
        self._pack_bytes = 0

    # ------------------------------------------------------------------ listing
    def sample_ids(self) -> list[str]:
        """Ids of the complete samples, sorted."""
        folder = self.path / "samples"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file())

    def incomplete_ids(self) -> list[str]:
        """Ids of samples whose write was interrupted (left in staging), sorted."""
        folder = self.path / "staging" / "samples"
        if not folder.is_dir():
            return []
        return sorted({p.name.rsplit("@", 1)[0] for p in folder.iterdir() if p.is_dir()})

    def __len__(self) -> int:
        return len(self.sample_ids())

    def __iter__(self) -> Iterator[str]:
        return iter(self.sample_ids())

    def __contains__(self, sample_id: object) -> bool:
        return (
            name_problem(sample_id, portable=False) is None
            and (self.path / "samples" / sample_id / "zarr.json").is_file()
        )

    def _sample_dir(self, sample_id: str) -> Path:
        check_sample_id(sample_id)
        if sample_id not in self:
            known = self.sample_ids()
            hint = f"; it has {', '.join(known[:5])}{' ...' if len(known) > 5 else ''}" if known else "; it is empty"
            raise SampleError(sample_id, "id", f"no such sample in {self.path}{hint}")
        return self.path / "samples" / sample_id

    def sample_attrs(self, sample_id: str) -> dict[str, Any]:
        """The sample's JSON attributes (blocks, tokens, messages, meta) without loading arrays."""
        group = _open_group(self._sample_dir(sample_id), sample_id, "attributes")
        return dict(group.attrs[ATTRS_KEY])

    def variants(self, sample_id: str) -> list[str]:
        """Names of the maps variants stored for a sample, sorted."""
        folder = self._sample_dir(sample_id) / "maps"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file())

    def sample_summary(self, sample_id: str) -> dict[str, Any]:
        """Sizes of a stored sample read from its metadata only: tokens, answer, vision, variants."""
        folder = self._sample_dir(sample_id)

        def shape(name: str) -> list[int]:
            return json.loads((folder / name / "zarr.json").read_text())["shape"]

        attrs = self.sample_attrs(sample_id)
        blocks = [VisionBlock.from_json(b) for b in attrs["vision_blocks"]]
        return {
            "id": sample_id,
            "tokens": shape("input_ids")[0],
            "answer_tokens": shape("answer_positions")[0],
            "context_tokens": shape("context_positions")[0],
            "hidden": shape("hidden"),
            "hidden_dtype": attrs["hidden_dtype"],
            "vision": [f"{b.kind} {'x'.join(map(str, b.grid))}" for b in blocks],
            "vision_cells": sum(b.size for b in blocks),
            "variants": self.variants(sample_id),
        }

    # ------------------------------------------------------------------ reading
    def sample(self, sample_id: str, media: bool = True) -> Sample:
        """Load one sample with the LM-head rows it needs (as float32), validated.

        media=False skips the encoded images and frames (explain does not need them).
        """
        folder = self._sample_dir(sample_id)
        group = _open_group(folder, sample_id, "attributes")
        attrs = group.attrs[ATTRS_KEY]
        arrays = {name: _read_array(group, name, sample_id) for name in SAMPLE_ARRAYS}
        for name in SAMPLE_OPTIONAL:
            arrays[name] = _read_array(group, name, sample_id) if name in group else None
        items = []
        for index, meta in enumerate(attrs.get("media", []) if media else []):
            data = _read_array(group, f"media/{index}", sample_id).tobytes()
            items.append(
                Media(item=meta["item"], kind=meta["kind"], mime=meta["mime"], data=data, frame=meta.get("frame"))
            )
        sample = Sample(
            id=sample_id,
            hidden_dtype=attrs["hidden_dtype"],
            vision_blocks=tuple(VisionBlock.from_json(b) for b in attrs["vision_blocks"]),
            lm_head=LMHead(ids=np.zeros(0, np.int64), rows=np.zeros((0, 0), np.float32)),
            tokens=attrs.get("tokens"),
            candidate_tokens=attrs.get("candidate_tokens"),
            media=items,
            messages=attrs.get("messages"),
            meta=attrs.get("meta", {}),
            **arrays,
        )
        sample.lm_head = self._gather_lm_head(sample, attrs.get("lm_head_packs", []))
        sample.validate(self.info.special_tokens)
        return sample

    def _pack(self, name: str, sample_id: str) -> LMHead:
        """An LM-head pack (ids, rows, bias in its stored dtype), read once and kept in a bounded cache."""
        cached = self._packs.get(name)
        if cached is not None:
            self._packs.move_to_end(name)
            return cached
        group = _open_group(self.path / "lm_head" / name, sample_id, "lm_head_rows")
        pack = LMHead(
            ids=_read_array(group, "ids", sample_id),
            rows=_read_array(group, "rows", sample_id),
            dtype=group.attrs[ATTRS_KEY]["dtype"],
            bias=_read_array(group, "bias", sample_id) if "bias" in group else None,
        )
        self._packs[name] = pack
        self._pack_bytes += pack.rows.nbytes
        while self._pack_bytes > PACK_CACHE_BYTES and len(self._packs) > 1:
            _, evicted = self._packs.popitem(last=False)
            self._pack_bytes -= evicted.rows.nbytes
        return pack

    def _gather_lm_head(self, sample: Sample, packs: list[str]) -> LMHead:
        needed = sample.needed_token_ids()
        width = sample.hidden.shape[1] if sample.hidden.ndim == 2 else 0
        rows = np.zeros((len(needed), width), dtype=np.float32)
        bias = None
        found = np.zeros(len(needed), dtype=bool)
        for name in packs:
            pack = self._pack(name, sample.id)
            take = np.isin(needed, pack.ids) & ~found
            if not take.any():
                continue
            part_rows, part_bias = pack.weights(needed[take])
            rows[take] = part_rows
            if part_bias is not None:
                if bias is None:
                    bias = np.zeros(len(needed), dtype=np.float32)
                bias[take] = part_bias
            found |= take
        return LMHead(ids=needed[found], rows=rows[found], dtype="float32", bias=None if bias is None else bias[found])

    def maps(self, sample_id: str, variant: str = "tam") -> Maps:
        """Load one explain variant of a sample."""
        folder = self._sample_dir(sample_id) / "maps" / check_name(variant, "variant name", portable=False)
        if not (folder / "zarr.json").is_file():
            have = self.variants(sample_id)
            raise SampleError(
                sample_id,
                f"maps/{variant}",
                f"no such variant (stored: {', '.join(have) or 'none'}); run `tamx explain {self.path}`",
            )
        group = _open_group(folder, sample_id, f"maps/{variant}")
        attrs = group.attrs[ATTRS_KEY]
        arrays = {name: _read_array(group, name, sample_id) for name in MAPS_ARRAYS}
        for name in MAPS_OPTIONAL:
            arrays[name] = _read_array(group, name, sample_id) if name in group else None
        return Maps(
            variant=variant, settings=attrs["settings"], nonfinite_hidden=attrs.get("nonfinite_hidden", 0), **arrays
        )

    def maps_settings(self, sample_id: str, variant: str) -> dict[str, Any] | None:
        """The settings a stored variant was made with, or None if it is not stored."""
        path = self._sample_dir(sample_id) / "maps" / check_name(variant, "variant name", portable=False) / "zarr.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())["attributes"][ATTRS_KEY]["settings"]

    # ------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.path} was opened read-only; use open_run(path, mode='a') to write")

    def _staging(self, kind: str, name: str) -> Path:
        folder = self.path / "staging" / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}@{uuid.uuid4().hex[:12]}"

    def _load_pack_index(self) -> dict[int, str]:
        if self._pack_index is None:
            index: dict[int, str] = {}
            folder = self.path / "lm_head"
            for pack in sorted(folder.iterdir()) if folder.is_dir() else []:
                if (pack / "zarr.json").is_file():
                    group = zarr.open_group(str(pack), mode="r")
                    for token_id in np.asarray(group["ids"][...]).tolist():
                        index.setdefault(token_id, pack.name)
            self._pack_index = index
        return self._pack_index

    def _write_pack(self, head: LMHead, token_ids: np.ndarray) -> str:
        name = uuid.uuid4().hex[:16]
        staged = self._staging("lm_head", name)
        group = zarr.open_group(str(staged), mode="w")
        group.attrs[ATTRS_KEY] = {"dtype": head.dtype, "created": _now()}
        part = head.subset(token_ids)
        _write_array(group, "ids", part.ids)
        _write_array(group, "rows", part.rows)
        if part.bias is not None:
            _write_array(group, "bias", part.bias)
        os.rename(staged, self.path / "lm_head" / name)
        return name

    def _store_lm_head(self, sample: Sample) -> list[str]:
        """Write the rows no stored pack holds yet; return the packs that cover the sample."""
        index = self._load_pack_index()
        needed = sample.needed_token_ids()
        new = np.array([t for t in needed.tolist() if t not in index], dtype=np.int64)
        if len(new):
            name = self._write_pack(sample.lm_head, new)
            index.update(dict.fromkeys(new.tolist(), name))
        return sorted({index[t] for t in needed.tolist()})

    def write_sample(self, sample: Sample, overwrite: bool = False) -> None:
        """Validate and store one sample atomically (maps of a replaced sample are dropped)."""
        self._require_writable()
        check_sample_id(sample.id, portable=True)
        sample.validate(self.info.special_tokens)
        if sample.id in self and not overwrite:
            raise SampleError(sample.id, "id", f"already stored in {self.path}; pass overwrite=True to replace it")
        for stale in (self.path / "staging" / "samples").glob(f"{sample.id}@*"):
            shutil.rmtree(stale, ignore_errors=True)
        packs = self._store_lm_head(sample)
        staged = self._staging("samples", sample.id)
        group = zarr.open_group(str(staged), mode="w")
        for name in SAMPLE_ARRAYS + SAMPLE_OPTIONAL:
            value = getattr(sample, name)
            if value is not None:
                _write_array(group, name, value)
        for index, item in enumerate(sample.media):
            _write_array(group, f"media/{index}", np.frombuffer(item.data, dtype=np.uint8))
        group.attrs[ATTRS_KEY] = {
            "hidden_dtype": sample.hidden_dtype,
            "vision_blocks": [b.to_json() for b in sample.vision_blocks],
            "lm_head_packs": packs,
            "tokens": sample.tokens,
            "candidate_tokens": sample.candidate_tokens,
            "messages": sample.messages,
            "meta": sample.meta,
            "media": [{"item": m.item, "kind": m.kind, "mime": m.mime, "frame": m.frame} for m in sample.media],
            "written": _now(),
        }
        trash = self.path / "staging" / "trash" / uuid.uuid4().hex
        _replace_dir(staged, self.path / "samples" / sample.id, trash)

    def write_maps(self, sample_id: str, maps: Maps, overwrite: bool = False) -> None:
        """Store one explain variant of a sample atomically."""
        self._require_writable()
        final = self._sample_dir(sample_id) / "maps" / check_name(maps.variant, "variant name")
        if final.exists() and not overwrite:
            raise SampleError(sample_id, f"maps/{maps.variant}", "already stored; pass overwrite=True to replace it")
        staged = self._staging("maps", f"{sample_id}.{maps.variant}")
        group = zarr.open_group(str(staged), mode="w")
        for name, value in maps.arrays().items():
            _write_array(group, name, np.asarray(value, dtype=np.float32))
        group.attrs[ATTRS_KEY] = {
            "settings": maps.settings,
            "nonfinite_hidden": maps.nonfinite_hidden,
            "written": _now(),
        }
        if not (final.parent / "zarr.json").is_file():
            zarr.open_group(str(final.parent), mode="a")
        _replace_dir(staged, final, self.path / "staging" / "trash" / uuid.uuid4().hex)


def create_run(path: str | os.PathLike, info: RunInfo, exist_ok: bool = False) -> Run:
    """Create an empty run store at `path` (or open it for appending if `exist_ok`)."""
    path = Path(path)
    if (path / "zarr.json").exists():
        if not exist_ok:
            raise StoreError(f"{path} already holds a store; open it with open_run(path, mode='a')")
        run = Run(path, writable=True)
        check_compatible(run.info, info, path)
        return run
    if path.exists() and any(path.iterdir()):
        raise StoreError(f"{path} exists and is not empty; choose a new folder for the run")
    root = zarr.open_group(str(path), mode="w")
    root.attrs[ATTRS_KEY] = {
        "schema_version": SCHEMA_VERSION,
        "run": info.to_json(),
        "created": _now(),
    }
    for name in ("samples", "lm_head", "staging"):
        zarr.open_group(str(path / name), mode="w")
    return Run(path, writable=True)


def check_compatible(stored: RunInfo, incoming: RunInfo, path: Path) -> None:
    """Refuse to mix samples of different models in one run."""
    known = {"unknown", ""}
    if stored.model_id not in known and incoming.model_id not in known and stored.model_id != incoming.model_id:
        raise StoreError(
            f"{path} holds samples of model {stored.model_id!r}, not {incoming.model_id!r}; write them to another run"
        )


def open_run(path: str | os.PathLike, mode: str = "r") -> Run:
    """Open an existing run store: mode "r" to read, "a" to also write samples and maps."""
    if mode not in ("r", "a"):
        raise StoreError(f"mode must be 'r' or 'a', got {mode!r}")
    return Run(path, writable=mode == "a")
