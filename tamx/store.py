"""The run store, schema 2: a run at a local path or any fsspec URL (layout in docs/store.md).

A sample is two objects: `samples/<id>/sample.<slot>`, its arrays packed back to back (each
chunk zstd-compressed and followed by its crc32c), and `samples/<id>/sample.json`, the commit:
the field table (dtype, shape, chunk offsets) and the JSON fields. A maps variant is the same
pair under `samples/<id>/maps/`. Writers put the data object first and the commit last, into
the slot the current commit does not use; readers trust only what a commit names. Nothing is
renamed, so object stores (S3, GCS) work the same as a local disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from glob import escape as glob_escape
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .errors import SampleError, StoreError
from .fields import SCHEMA, arrays, json_fields, stored_json, unknown
from .records import (
    MAPS_FIELDS,
    REENCODE,
    SAMPLE_FIELDS,
    Maps,
    RunInfo,
    Sample,
    VisionBlock,
    check_media_json,
    check_name,
    check_sample_id,
    is_sample_id,
    sample_from_values,
    sample_values,
)

log = logging.getLogger(__name__)

ROOT = "tamx-run.json"
MAGIC = b"TAMXOBJ2"
CHUNK_BYTES = 8 << 20
ZSTD_LEVEL = -5  # zstd fast mode: bf16 hidden states hardly compress, maps do (docs/store.md)
MAPS_ZSTD_LEVEL = -20  # maps: 2.5x faster to write than -5 for 18% more bytes (docs/method.md "Speed")
_ASIDE = re.compile(r"[0-9a-f]{12}")  # the suffix of LocalObjects' aside files
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# A read that fails while a writer replaces the commit under it starts again from the new
# commit; only an overwrite racing every attempt exhausts these (docs/store.md).
READ_ATTEMPTS = 8


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- objects


class LocalObjects:
    """Objects as files under a folder. A commit is written aside and renamed into place; the
    asides a killed write left of that object are removed by its next write."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(local_path(root))

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        with open(self.root / key, "rb") as handle:
            handle.seek(start)
            return handle.read(-1 if end is None else end - start)

    def write(self, key: str, data: bytes, atomic: bool = False) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if not atomic:
            path.write_bytes(data)
            return
        aside = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}")
        try:
            aside.write_bytes(data)
            os.replace(aside, path)
        except FileNotFoundError:
            if aside.parent.is_dir():  # the next writer of this object removed it as a stray
                raise StoreError(f"{path}: another writer replaced it during this write; write it again") from None
            raise
        except BaseException:
            aside.unlink(missing_ok=True)
            raise
        for stray in path.parent.glob(f".{glob_escape(path.name)}.*"):
            if _ASIDE.fullmatch(stray.name.removeprefix(f".{path.name}.")):
                stray.unlink(missing_ok=True)  # a killed write's (a racing one's fails, above)

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        """Names directly under `prefix` (files and folders), sorted; [] if there is none."""
        folder = self.root / prefix
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def glob(self, pattern: str) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.glob(pattern))

    def walk(self, prefix: str) -> list[tuple[str, int]]:
        """(key, bytes) of every object under `prefix`."""
        found = []
        for parent, _, names in os.walk(self.root / prefix):  # a folder that is gone is skipped
            for name in names:
                path = Path(parent, name)
                with contextlib.suppress(FileNotFoundError):  # deleted since it was listed
                    found.append((path.relative_to(self.root).as_posix(), path.stat().st_size))
        return found

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def is_empty(self) -> bool:
        return not self.root.exists() or not any(self.root.iterdir())


class FsspecObjects:
    """Objects at an fsspec URL (s3://, gs://, memory://, ...); credentials and endpoints come
    from the usual environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). One PUT per object."""

    def __init__(self, url: str) -> None:
        try:
            import fsspec
        except ImportError:
            raise StoreError(f"{url}: runs at URLs need fsspec (pip install 'tamx[remote]')") from None
        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise StoreError(f"{url}: no file system for this URL ({exc}); install its fsspec package") from None
        self.root = root.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return self.fs.cat_file(self._path(key), start=start or None, end=end)

    def write(self, key: str, data: bytes, atomic: bool = False) -> None:
        self.fs.pipe_file(self._path(key), data)  # one PUT: atomic on object stores

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

    def list(self, prefix: str) -> list[str]:
        try:
            entries = self.fs.ls(self._path(prefix), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted({PurePosixPath(e).name for e in entries} - {""})

    def glob(self, pattern: str) -> list[str]:
        self.fs.invalidate_cache(self.root)
        return sorted(p[len(self.root) + 1 :] for p in self.fs.glob(self._path(pattern)))

    def walk(self, prefix: str) -> list[tuple[str, int]]:
        self.fs.invalidate_cache(self.root)
        found = self.fs.find(self._path(prefix), detail=True)
        return [(path[len(self.root) + 1 :], int(info.get("size") or 0)) for path, info in found.items()]

    def exists(self, key: str) -> bool:
        try:
            self.fs.info(self._path(key), refresh=True)
        except FileNotFoundError:
            return False
        except TypeError:  # file systems without `refresh`
            return self.fs.exists(self._path(key))
        return True

    def is_empty(self) -> bool:
        return not self.walk("")


def is_url(location: str | os.PathLike) -> bool:
    """Whether `location` is a URL with a scheme other than file://."""
    text = str(location)
    return bool(_REMOTE.match(text)) and not text.startswith("file://")


def local_path(location: str | os.PathLike) -> str:
    """A file:// URL as the local path it names; anything else as it is."""
    return str(location).removeprefix("file://")


def objects_at(location: str | os.PathLike) -> LocalObjects | FsspecObjects:
    return FsspecObjects(str(location)) if is_url(location) else LocalObjects(location)


# ---------------------------------------------------------------------------- packed records


def pack(values: dict[str, np.ndarray], level: int = ZSTD_LEVEL) -> tuple[bytes, dict[str, Any]]:
    """Arrays packed into one object: MAGIC, then every chunk (zstd + 4-byte crc32c) in order.

    Returns the bytes and the field table {name: {dtype, shape, chunks: [[offset, length]]}}.
    """
    import google_crc32c
    import zstandard

    compressor = zstandard.ZstdCompressor(level=level)
    parts = [MAGIC]
    offset = len(MAGIC)
    table: dict[str, Any] = {}
    for name, value in values.items():
        value = np.ascontiguousarray(value)
        raw = memoryview(value.reshape(-1)).cast("B") if value.size else memoryview(b"")
        chunks = []
        for start in range(0, len(raw), CHUNK_BYTES):
            payload = compressor.compress(raw[start : start + CHUNK_BYTES])
            chunk = payload + google_crc32c.value(payload).to_bytes(4, "little")
            parts.append(chunk)
            chunks.append([offset, len(chunk)])
            offset += len(chunk)
        table[name] = {"dtype": value.dtype.name, "shape": list(value.shape), "chunks": chunks}
    return b"".join(parts), table


def unpack(data: np.ndarray, base: int, entry: dict[str, Any], fail) -> np.ndarray:
    """One array from `data` (the object's bytes from offset `base`, as uint8), its checksums verified."""
    import google_crc32c
    import zstandard

    try:
        dtype, shape = np.dtype(entry["dtype"]), tuple(int(d) for d in entry["shape"])
        chunks = [(int(o), int(n)) for o, n in entry["chunks"]]
    except (KeyError, TypeError, ValueError) as exc:
        fail(f"its entry in the commit is damaged ({type(exc).__name__}: {exc}); {REENCODE}")
    payloads = []
    for index, (offset, length) in enumerate(chunks):
        chunk = data[offset - base : offset - base + length]
        if len(chunk) != length or length < 4:
            fail(f"chunk {index} is truncated ({len(chunk)} of {length} bytes); {REENCODE}")
        payload = chunk[:-4]
        if google_crc32c.value(payload) != int.from_bytes(chunk[-4:].tobytes(), "little"):
            fail(f"chunk {index} fails its crc32c checksum (the data is corrupted); {REENCODE}")
        payloads.append(payload)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    try:  # the frames name their sizes (-1: not written): check them before allocating the entry's size
        sizes = [zstandard.frame_content_size(p) for p in payloads]
    except zstandard.ZstdError as exc:
        fail(f"a chunk is not a zstd frame ({exc}); {REENCODE}")
    if min(sizes, default=0) >= 0 and sum(sizes) != expected:
        fail(f"holds {sum(sizes)} bytes for shape {list(shape)} {dtype} ({expected} bytes); {REENCODE}")
    raw = np.empty(expected, dtype=np.uint8)  # the chunks decompress straight into it (not zero-filled first)
    view, filled = memoryview(raw), 0
    decompressor = zstandard.ZstdDecompressor()
    for index, payload in enumerate(payloads):
        try:
            with decompressor.stream_reader(payload) as reader:
                while filled < expected and (count := reader.readinto(view[filled:])):
                    filled += count
                overflow = reader.read(1)
        except zstandard.ZstdError as exc:
            fail(f"chunk {index} does not decompress ({exc}); {REENCODE}")
        if overflow:
            fail(f"chunk {index} decompresses past the {expected} bytes of shape {list(shape)} {dtype}; {REENCODE}")
    if filled != expected:
        fail(f"holds {filled} bytes for shape {list(shape)} {dtype} ({expected} bytes); {REENCODE}")
    return raw.view(dtype).reshape(shape)


def _commit_json(data: bytes, fail) -> dict[str, Any]:
    """A commit object parsed and checked for the keys every commit has."""
    try:
        commit = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"its commit is not valid JSON ({exc}); {REENCODE}")
    if not isinstance(commit, dict):
        fail(f"its commit is a JSON {type(commit).__name__}, not an object; {REENCODE}")
    schema = commit.get("schema")
    if not (isinstance(schema, list) and len(schema) == 2 and all(isinstance(v, int) for v in schema)):
        fail(f"its commit has no valid schema version ({schema!r}); {REENCODE}")
    if schema[0] != SCHEMA[0]:
        fail(f"was written with store schema {schema[0]}.{schema[1]}; this tamx reads schema {SCHEMA[0]}")
    for key, kind in (("slot", int), ("size", int), ("fields", dict), ("json", dict)):
        if not isinstance(commit.get(key), kind):
            fail(f"its commit lacks {key!r} ({kind.__name__}); {REENCODE}")
    return commit


# ---------------------------------------------------------------------------- the run


@dataclasses.dataclass
class Survey:
    """What `Run.survey` found: the readable samples' summaries (as `Run.sample_summary`), the
    damaged samples and variants (why, in one line each), and objects no commit names."""

    samples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    damaged: dict[str, str] = dataclasses.field(default_factory=dict)
    damaged_maps: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    incomplete: list[str] = dataclasses.field(default_factory=list)
    garbage: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    bytes: int = 0


# what each encode addition (docs/encode.md, "Baselines") stores: its fields
BASELINE_GROUPS = {
    "layers": ("lens_positions", "lens_hidden"),
    "attention": ("attention", "attention_prompt", "rollout", "rollout_prompt"),
    "gradients": ("gradient", "gradient_prompt"),
}


def _baseline_bytes(table: dict[str, Any]) -> dict[str, int]:
    """The stored (compressed) bytes of each encode addition a sample holds, from its commit's table."""
    sizes = {}
    for group, names in BASELINE_GROUPS.items():
        entries = [table[name] for name in names if isinstance(table.get(name), dict)]
        if entries:
            sizes[group] = sum(int(length) for entry in entries for _, length in entry.get("chunks") or [])
    return sizes


class Run:
    """An opened run store. Use `open_run` or `create_run` rather than this constructor."""

    def __init__(
        self, location: str | os.PathLike, writable: bool = False, attrs: dict[str, Any] | None = None
    ) -> None:
        """`attrs`: the run attributes to use instead of reading the root (for `tamx upgrade`)."""
        self.url = str(location)
        self.objects = objects_at(location)
        self.path = Path(self.url) if isinstance(self.objects, LocalObjects) else PurePosixPath(self.objects.root)
        self.writable = writable
        self.schema = SCHEMA
        self.attrs = self._read_root() if attrs is None else attrs
        self.info = RunInfo.from_json(self.attrs["run"], where=f"{self.url}/{ROOT}")
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        schema, mode = f"{self.schema[0]}.{self.schema[1]}", "a" if self.writable else "r"
        return f"<tamx.Run {self.url!r} model={self.info.model_id!r} schema={schema} mode={mode!r}>"

    def _read_root(self) -> dict[str, Any]:
        where = f"{self.url}/{ROOT}"
        try:
            raw = self.objects.read(ROOT)
        except FileNotFoundError:
            if self.objects.exists("zarr.json"):
                raise StoreError(
                    f"{self.url} is a schema-1 run (zarr.json); this tamx reads schema {SCHEMA[0]}: "
                    f"convert it in place with `tamx upgrade {self.url}`"
                ) from None
            if self.objects.exists("schema-1/zarr.json"):
                raise StoreError(
                    f"{self.url} is a schema-1 run whose upgrade was interrupted (schema-1/zarr.json, no {ROOT}); "
                    f"finish it with `tamx upgrade {self.url}`"
                ) from None
            raise StoreError(
                f"{self.url} is not a tamx run store (no {ROOT}); create one with `tamx encode` or `tamx import`"
            ) from None
        except (NotADirectoryError, IsADirectoryError, PermissionError) as exc:
            raise StoreError(f"{where} cannot be read ({exc})") from None
        damaged = "restore it from a backup, or re-create the run"
        try:
            attrs = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{where} is damaged: not UTF-8 JSON ({exc}); {damaged}") from None
        if not isinstance(attrs, dict):
            raise StoreError(f"{where} is damaged: a JSON {type(attrs).__name__}, not an object; {damaged}")
        version, minor = attrs.get("schema_version"), attrs.get("schema_minor", 0)
        if not isinstance(version, int) or isinstance(version, bool) or not isinstance(minor, int):
            raise StoreError(
                f"{where} is damaged: schema_version is {version!r} ({type(version).__name__}) and "
                f"schema_minor {minor!r}, where integers belong; this tamx reads schema {SCHEMA[0]}.x; {damaged}"
            )
        if version > SCHEMA[0]:
            raise StoreError(
                f"{self.url} was written with store schema {version}.{minor}, newer than this tamx reads "
                f"({SCHEMA[0]}.x): upgrade tamx (pip install -U tamx)"
            )
        if version < SCHEMA[0]:
            # schema 1 kept its attributes in zarr.json: no tamx wrote this, `tamx upgrade` cannot convert it
            raise StoreError(
                f"{where} is damaged: it says schema {version}, but only schema {SCHEMA[0]} runs have a {ROOT} "
                f"(schema-1 runs have a zarr.json, which `tamx upgrade` converts); {damaged}"
            )
        if not isinstance(attrs.get("run"), dict):
            raise StoreError(f"{where} is damaged: 'run' must be an object of run attributes; {damaged}")
        self.schema = (version, minor)
        return attrs

    def _newer(self, what: str, names: list[str]) -> None:
        """Say once per run and field which fields of a newer minor version are ignored."""
        new = [n for n in names if n not in self._warned]
        if new:
            self._warned.update(new)
            log.warning(
                "%s: %s field(s) %s are not known to this tamx (schema %d.%d, the run is %d.%d) and are ignored",
                self.url,
                what,
                ", ".join(new),
                *SCHEMA,
                *self.schema,
            )

    # ------------------------------------------------------------------ listing
    def sample_ids(self) -> list[str]:
        """Ids of the committed samples, sorted."""
        return sorted(key.split("/")[1] for key in self.objects.glob("samples/*/sample.json"))

    def garbage(self) -> dict[str, list[str]]:
        """Objects no commit names (left by a killed writer), by sample id; the next write of
        that sample replaces them. A sample without a commit lists all its objects."""
        return self.survey().garbage

    def survey(self) -> Survey:
        """Every sample and variant checked from one listing of the run and one read of each
        commit (no data object is read): summaries, damage, killed writers' objects, size."""
        listing = dict(self.objects.walk(""))
        survey = Survey(bytes=sum(listing.values()))
        by_sample: dict[str, dict[str, int]] = {}
        for key, size in listing.items():
            parts = key.split("/")
            if len(parts) >= 3 and parts[0] == "samples":
                by_sample.setdefault(parts[1], {})[key] = size
        for sample_id, keys in sorted(by_sample.items()):
            prefix = f"samples/{sample_id}"
            named: set[str] = set()
            if f"{prefix}/sample.json" not in keys:
                survey.incomplete.append(sample_id)
            else:
                try:
                    commit = self._sample_commit(sample_id)
                except SampleError as exc:
                    survey.damaged[sample_id] = str(exc)  # its objects are listed as garbage below
                else:
                    named |= self._survey_sample(survey, sample_id, commit, keys)
            left = sorted(set(keys) - named)
            if left:
                survey.garbage[sample_id] = left
        return survey

    def _survey_sample(self, survey: Survey, sample_id: str, commit: dict[str, Any], keys: dict[str, int]) -> set[str]:
        """Check one committed sample and its variants against the listing `keys` ({key: bytes});
        add it to `survey`; return the keys its commits name."""
        prefix = f"samples/{sample_id}"

        def fail(field: str, problem: str) -> None:
            raise SampleError(sample_id, field, problem)

        named = {f"{prefix}/sample.json"}
        try:
            read = functools.partial(self._sample_commit, sample_id)
            commit = self._whole(commit, read, f"{prefix}/sample", keys, functools.partial(fail, "data"))
            named.add(f"{prefix}/sample.{commit['slot']}")
        except SampleError as exc:
            survey.damaged[sample_id] = str(exc)
        variants, damaged = [], {}
        for key in sorted(keys):
            name = key.removeprefix(f"{prefix}/maps/")
            if name == key or "/" in name or name.startswith(".") or not name.endswith(".json"):
                continue
            variant = name[: -len(".json")]
            fix = f"`tamx explain {self.url} --variant {variant}` (with the options that made it) computes it again"
            try:
                maps = self._variant_commit(sample_id, variant, sample=commit)
                if maps is not None:
                    read = functools.partial(self._variant_commit, sample_id, variant)
                    stem = f"{prefix}/maps/{variant}"
                    maps = self._whole(maps, read, stem, keys, functools.partial(fail, f"maps/{variant}"), fix)
            except SampleError as exc:
                named.add(key)
                variants.append(variant)
                damaged[variant] = str(exc)
                continue
            if maps is not None:  # else maps of an earlier version of the sample: garbage
                variants.append(variant)
                named |= {key, f"{prefix}/maps/{variant}.{maps['slot']}"}
        for key in sorted(keys):  # faithfulness records: named when current, else garbage
            name = key.removeprefix(f"{prefix}/faithfulness/")
            if name != key and "/" not in name and name.endswith(".json") and not name.startswith("."):
                found = self._commit_or_none(key)
                if found is not None and found.get("sample_token") == commit["token"]:
                    named |= {key, f"{prefix}/faithfulness/{name[: -len('.json')]}.{found['slot']}"}
        if damaged:
            survey.damaged_maps[sample_id] = damaged
        if sample_id not in survey.damaged:
            try:
                survey.samples.append(self._summary(sample_id, commit, variants))
            except SampleError as exc:
                survey.damaged[sample_id] = str(exc)
        return named

    def _whole(
        self,
        commit: dict[str, Any],
        read: Callable[[], dict[str, Any] | None],
        stem: str,
        keys: dict[str, int],
        fail: Callable[[str], None],
        fix: str = REENCODE,
    ) -> dict[str, Any] | None:
        """`commit` if the data object it names, `<stem>.<slot>`, is in the listing `keys` ({key:
        bytes}) with the commit's size. If not, a writer may have replaced the commit since the
        listing: the sample's folder is listed again between two reads of the commit (`read`)
        until the commit holds still across one (at most READ_ATTEMPTS times). Returns the commit
        last read (None: the record is gone now), or fails naming the missing or short object."""
        folder = "/".join(stem.split("/")[:2])
        for _ in range(READ_ATTEMPTS):
            key, size = f"{stem}.{commit['slot']}", commit["size"]
            if keys.get(key) == size:
                return commit
            keys = dict(self.objects.walk(folder))
            again = read()
            if again is None:
                return None
            if again.get("token") == commit.get("token"):
                if keys.get(key) == size:
                    return commit
                break
            commit = again
        problem = "is missing" if key not in keys else f"holds {keys[key]} bytes where its commit says {size}"
        fail(f"its data object {key} {problem}; {fix}")
        return None

    def incomplete_ids(self) -> list[str]:
        """Ids of samples whose first write was interrupted (objects but no commit), sorted."""
        committed = set(self.sample_ids())
        # one listing of the sample folders; only those without a commit are looked into
        uncommitted = [name for name in self.objects.list("samples") if name not in committed]
        return sorted(name for name in uncommitted if self.objects.walk(f"samples/{name}"))

    def __len__(self) -> int:
        return len(self.sample_ids())

    def __iter__(self) -> Iterator[str]:
        return iter(self.sample_ids())

    def __contains__(self, sample_id: object) -> bool:
        return is_sample_id(sample_id) and self.objects.exists(f"samples/{sample_id}/sample.json")

    def _commit_or_none(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self.objects.read(key)
            commit = json.loads(raw.decode("utf-8"))
        except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return commit if isinstance(commit, dict) and isinstance(commit.get("slot"), int) else None

    def _sample_commit(self, sample_id: str) -> dict[str, Any]:
        check_sample_id(sample_id)

        def fail(problem: str) -> None:
            raise SampleError(sample_id, "commit", problem)

        try:
            raw = self.objects.read(f"samples/{sample_id}/sample.json")
        except FileNotFoundError:
            known = self.sample_ids()
            hint = f"; it has {', '.join(known[:5])}{' ...' if len(known) > 5 else ''}" if known else "; it is empty"
            raise SampleError(sample_id, "id", f"no such sample in {self.url}{hint}") from None
        commit = _commit_json(raw, fail)
        if not isinstance(commit.get("token"), str):
            fail(f"its commit lacks its write token; {REENCODE}")
        return commit

    def _read_fields(self, key: str, commit: dict[str, Any], names: list[str], fail_field) -> dict[str, np.ndarray]:
        """The arrays `names` of the data object `key` that `commit` describes (one ranged read)."""
        table = commit["fields"]
        spans = [
            (int(o), int(o) + int(n))
            for name in names
            for o, n in (table[name].get("chunks", []) if isinstance(table[name], dict) else [])
        ]
        start = min((s for s, _ in spans), default=0)
        end = max((e for _, e in spans), default=0)
        try:
            data = self.objects.read(key, start, end) if end > start else b""
        except FileNotFoundError:
            fail_field(names[0] if names else "commit", f"its data object {key} is missing; {REENCODE}")
        view = np.frombuffer(data, dtype=np.uint8)  # chunks are sliced without copying
        return {
            name: unpack(view, start, table[name], lambda problem, name=name: fail_field(name, problem))
            for name in names
        }

    def sample_version(self, sample_id: str) -> str:
        """A stamp of the sample's current commit: it changes whenever the sample is rewritten
        (SampleError if there is no such sample)."""
        return self._sample_commit(sample_id)["token"]

    def sample_attrs(self, sample_id: str) -> dict[str, Any]:
        """The sample's JSON fields (blocks, tokens, messages, meta, media) without loading arrays."""
        return dict(self._sample_commit(sample_id)["json"])

    def variants(self, sample_id: str) -> list[str]:
        """Names of the maps variants committed for the current version of a sample, sorted (a
        damaged commit is listed too, so that reading it names the damage)."""
        return self._committed(sample_id, "maps", damaged=True)

    def _committed(self, sample_id: str, folder: str, damaged: bool) -> list[str]:
        """Names of the commits under samples/<id>/<folder> (maps, faithfulness) that belong to the
        current version of the sample, sorted; `damaged`: also those whose commit does not read."""
        token = self._sample_commit(sample_id)["token"]
        prefix = f"samples/{sample_id}/{folder}"
        names = []
        for name in self.objects.list(prefix):
            if not name.endswith(".json") or name.startswith("."):
                continue
            commit = self._commit_or_none(f"{prefix}/{name}")
            if commit is None:
                # damaged, unless deleted since the listing (a rewrite of the sample dropped it)
                if damaged and self.objects.exists(f"{prefix}/{name}"):
                    names.append(name[: -len(".json")])
            elif commit.get("sample_token") == token:
                names.append(name[: -len(".json")])
        return sorted(names)

    def sample_summary(self, sample_id: str) -> dict[str, Any]:
        """Sizes of a stored sample read from its commit only: tokens, answer, vision, variants."""
        return self._summary(sample_id, self._sample_commit(sample_id), self.variants(sample_id))

    def _summary(self, sample_id: str, commit: dict[str, Any], variants: list[str]) -> dict[str, Any]:
        """sample_summary of `commit`."""
        attrs, table = commit["json"], commit["fields"]

        def shape(name: str) -> list[int]:
            entry = table.get(name)
            if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list):
                raise SampleError(sample_id, name, f"the commit does not describe it; {REENCODE}")
            return entry["shape"]

        try:
            blocks = [VisionBlock.from_json(b) for b in attrs["vision_blocks"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise SampleError(sample_id, "vision_blocks", f"damaged ({exc!r}); {REENCODE}") from None
        return {
            "id": sample_id,
            "tokens": shape("input_ids")[0],
            "answer_tokens": shape("answer_positions")[0],
            "context_tokens": shape("context_positions")[0],
            "hidden": shape("hidden"),
            "hidden_dtype": attrs.get("hidden_dtype"),
            "vision": [f"{b.kind} {'x'.join(map(str, b.grid))}" for b in blocks],
            "vision_cells": sum(b.size for b in blocks),
            "variants": variants,
            "bytes": commit["size"],
            "baseline_bytes": _baseline_bytes(table),
        }

    # ------------------------------------------------------------------ reading
    def sample(self, sample_id: str, media: bool = True) -> Sample:
        """Load one sample (arrays in their stored dtype), checked against SAMPLE_FIELDS.

        media=False skips the encoded images and frames (explain does not need them).
        """
        return self._consistent(
            lambda: self._sample_commit(sample_id),
            lambda commit: self._sample_from(sample_id, commit, media),
            token=lambda commit: commit["token"],
        )

    def _consistent(self, read_commit: Callable[[], Any], body: Callable[[Any], Any], token: Callable[[Any], Any]):
        """body(commit) for the current commit. When it fails because a writer replaced that commit
        meanwhile (and deleted or rewrote the data object it names), again from the new one: a
        reader gets the old or the new version. Damage that stays under an unchanged commit, or
        an overwrite racing READ_ATTEMPTS reads in a row, is raised."""
        commit = read_commit()
        for _ in range(READ_ATTEMPTS - 1):
            try:
                return body(commit)
            except SampleError:
                fresh = read_commit()
                if token(fresh) == token(commit):
                    raise
                log.debug("%s: the commit changed during a read; reading the new version", self.url)
                commit = fresh
        return body(commit)

    def _sample_from(self, sample_id: str, commit: dict[str, Any], media: bool) -> Sample:
        """The sample that `commit` describes, its data object read and checked."""
        table = commit["fields"]
        known = {f.name for f in arrays(SAMPLE_FIELDS)}
        extra = [n for n in table if n not in known and not n.startswith("media.")]
        extra += unknown(SAMPLE_FIELDS, [k for k in commit["json"] if k not in known])
        if extra:
            self._newer("sample", extra)
        names = [n for n in table if n in known or (media and n.startswith("media."))]

        def fail(name: str, problem: str) -> None:
            raise SampleError(sample_id, name, problem)

        values: dict[str, Any] = {f.name: commit["json"].get(f.name) for f in json_fields(SAMPLE_FIELDS)}
        if not media:
            if isinstance(values["media"], list):
                check_media_json(sample_id, values["media"])  # checked even when its bytes are not read
            values["media"] = [] if values["media"] is not None else None
        values.update(self._read_fields(f"samples/{sample_id}/sample.{commit['slot']}", commit, names, fail))
        sample = sample_from_values(sample_id, values)
        sample.validate(self.info.special_tokens)
        return sample

    def _maps_commit(
        self, sample_id: str, variant: str, sample: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(sample commit, maps commit) of a variant of the current sample, or None if not stored.
        `sample`: the sample commit if just read."""
        return self._folder_commit(sample_id, "maps", variant, sample)

    def _folder_commit(
        self, sample_id: str, folder: str, variant: str, sample: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(sample commit, commit of samples/<id>/<folder>/<variant>) of the current sample (folder:
        maps, faithfulness), or None if not stored. `sample`: the sample commit if just read."""
        sample = self._sample_commit(sample_id) if sample is None else sample
        check_name(variant, "variant name", portable=False)
        try:
            raw = self.objects.read(f"samples/{sample_id}/{folder}/{variant}.json")
        except FileNotFoundError:
            return None
        commit = _commit_json(raw, lambda problem: _raise(sample_id, f"{folder}/{variant}", problem))
        if commit.get("sample_token") != sample["token"]:
            return None  # of a sample that has since been rewritten
        return sample, commit

    def _variant_commit(
        self, sample_id: str, variant: str, sample: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The maps commit of a variant of the current sample, or None if not stored."""
        found = self._maps_commit(sample_id, variant, sample)
        return None if found is None else found[1]

    def maps(self, sample_id: str, variant: str = "tam") -> Maps:
        """Load one explain variant of a sample as stored, checked against MAPS_FIELDS and the sample.

        Nothing is computed: a variant that an earlier `tamx explain` stored with its candidate
        and prompt maps deferred has them None and named in `maps.deferred`;
        `tamx.explain.complete_maps(sample, maps)` computes them (docs/store.md).
        """
        return self._consistent(
            lambda: self._stored_maps_commit(sample_id, variant),
            lambda found: self._maps_from(sample_id, variant, *found),
            token=lambda found: (found[0]["token"], found[1]["token"]),
        )

    def _stored_maps_commit(self, sample_id: str, variant: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(sample commit, maps commit) of a stored variant (SampleError naming the stored ones if none)."""
        found = self._maps_commit(sample_id, variant)
        if found is None:
            have = self.variants(sample_id)
            raise SampleError(
                sample_id,
                f"maps/{variant}",
                f"no such variant (stored: {', '.join(have) or 'none'}); run `tamx explain {self.url}`",
            )
        return found

    def _maps_from(self, sample_id: str, variant: str, sample_commit: dict[str, Any], commit: dict[str, Any]) -> Maps:
        """The maps that `commit` describes, their data object read and checked against the sample."""
        known = {f.name for f in arrays(MAPS_FIELDS)}
        extra = [n for n in commit["fields"] if n not in known] + unknown(MAPS_FIELDS, list(commit["json"]))
        if extra:
            self._newer("maps", extra)

        def fail(name: str, problem: str) -> None:
            raise SampleError(sample_id, f"maps/{variant}/{name}", problem)

        names = [n for n in commit["fields"] if n in known]
        values: dict[str, Any] = dict(commit["json"])
        values.update(self._read_fields(f"samples/{sample_id}/maps/{variant}.{commit['slot']}", commit, names, fail))
        return Maps.from_values(variant, values, sample_id, _commit_dims(sample_commit, sample_id))

    # ------------------------------------------------------------ faithfulness records
    def faithfulness_variants(self, sample_id: str) -> list[str]:
        """Variants with a faithfulness record of the current version of a sample, sorted."""
        return self._committed(sample_id, "faithfulness", damaged=False)

    def _faithfulness_commit(self, sample_id: str, variant: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(sample commit, record commit) of a variant's faithfulness record, or None if not stored."""
        return self._folder_commit(sample_id, "faithfulness", variant)

    def faithfulness(self, sample_id: str, variant: str):
        """Load one variant's faithfulness record (`tamx.faithfulness.Faithfulness`) of a sample."""
        from .faithfulness import FAITHFULNESS_FIELDS, Faithfulness

        def read(found: tuple[dict[str, Any], dict[str, Any]] | None) -> Faithfulness:
            if found is None:
                have = self.faithfulness_variants(sample_id)
                raise SampleError(
                    sample_id,
                    f"faithfulness/{variant}",
                    f"no such record (stored: {', '.join(have) or 'none'}); run `tamx faithfulness {self.url}`",
                )
            sample, commit = found
            known = {f.name for f in arrays(FAITHFULNESS_FIELDS)}
            names = [n for n in commit["fields"] if n in known]

            def fail(name: str, problem: str) -> None:
                raise SampleError(sample_id, f"faithfulness/{variant}/{name}", problem)

            values: dict[str, Any] = dict(commit["json"])
            key = f"samples/{sample_id}/faithfulness/{variant}.{commit['slot']}"
            values.update(self._read_fields(key, commit, names, fail))
            answers = _commit_dims(sample, sample_id)["N"]
            return Faithfulness.from_values(variant, values, sample_id, answers)

        return self._consistent(
            lambda: self._faithfulness_commit(sample_id, variant),
            read,
            token=lambda found: None if found is None else (found[0]["token"], found[1]["token"]),
        )

    def write_faithfulness(self, sample_id: str, record, overwrite: bool = False, sample_version: str | None = None):
        """Store one variant's faithfulness record of a sample (data object, then commit)."""
        from .faithfulness import FAITHFULNESS_FIELDS

        self._require_writable()
        check_name(record.variant, "variant name")
        sample = self._sample_commit(sample_id)
        where = f"faithfulness/{record.variant}"
        if sample_version is not None and sample["token"] != sample_version:
            raise SampleError(sample_id, where, "the sample was rewritten while this was computed; run it again")
        if not overwrite and self._faithfulness_commit(sample_id, record.variant) is not None:
            raise SampleError(sample_id, where, "already stored; pass overwrite=True to replace it")
        record.validate(sample_id, _commit_dims(sample, sample_id)["N"])
        prefix = f"samples/{sample_id}/faithfulness/{record.variant}"
        extra = {"variant": record.variant, "sample_token": sample["token"]}
        self._commit(prefix, record.values(), FAITHFULNESS_FIELDS, extra)

    def maps_settings(self, sample_id: str, variant: str) -> dict[str, Any] | None:
        """The settings a stored variant was made with, or None if it is not stored, or if the data
        object its commit names is gone (`tamx explain` then computes it again)."""
        found = self._maps_commit(sample_id, variant)
        if found is None:
            return None
        key = f"samples/{sample_id}/maps/{variant}.{found[1]['slot']}"
        if not self.objects.exists(key) and self._maps_commit(sample_id, variant) == found:
            log.warning("sample %r: variant %r is not whole: its data object %s is missing", sample_id, variant, key)
            return None
        return found[1]["json"].get("settings")

    # ------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.url} was opened read-only; use open_run(path, mode='a') to write")

    def _commit(
        self, prefix: str, values: dict[str, Any], fields, extra: dict[str, Any], level: int = ZSTD_LEVEL
    ) -> dict[str, Any]:
        """Write data object then commit for `prefix` (".../sample" or ".../maps/<variant>")."""
        previous = self._commit_or_none(f"{prefix}.json")
        slot = 1 - previous["slot"] if previous is not None and previous["slot"] in (0, 1) else 0
        array_values = {
            name: value
            for name, value in values.items()
            if isinstance(value, np.ndarray) and not name.startswith("media.")
        }
        array_values.update({n: v for n, v in values.items() if n.startswith("media.")})  # media last
        data, table = pack(array_values, level)
        commit = {
            "schema": list(SCHEMA),
            "slot": slot,
            "size": len(data),
            "token": uuid.uuid4().hex,
            "written": _now(),
            "fields": table,
            "json": stored_json(fields, values),
            **extra,
        }
        self.objects.write(f"{prefix}.{slot}", data)
        self.objects.write(f"{prefix}.json", json.dumps(commit).encode(), atomic=True)
        self.objects.delete(f"{prefix}.{1 - slot}")
        return commit

    def write_sample(self, sample: Sample, overwrite: bool = False) -> None:
        """Validate and store one sample: data object, then commit (maps of a replaced sample are dropped)."""
        self._require_writable()
        check_sample_id(sample.id, portable=True)
        sample.validate(self.info.special_tokens)
        if sample.id in self and not overwrite:
            raise SampleError(sample.id, "id", f"already stored in {self.url}; pass overwrite=True to replace it")
        needed = sample.needed_token_ids()
        if len(needed) != len(sample.lm_head.ids):
            sample = dataclasses.replace(sample, lm_head=sample.lm_head.subset(needed))
        prefix = f"samples/{sample.id}"
        self._commit(f"{prefix}/sample", sample_values(sample), SAMPLE_FIELDS, {})
        for folder in ("maps", "faithfulness"):
            for name in self.objects.list(f"{prefix}/{folder}"):
                if name.rsplit(".", 1)[-1] in ("json", "0", "1") or name.startswith("."):
                    self.objects.delete(
                        f"{prefix}/{folder}/{name}"
                    )  # stale: their commits name the old sample (or asides)

    def write_maps(
        self, sample_id: str, maps: Maps, overwrite: bool = False, sample_version: str | None = None
    ) -> None:
        """Store one explain variant of a sample, checked against the sample's dimensions.

        sample_version: the `sample_version` the maps were computed from; if the sample has
        been rewritten since (another writer), the maps are refused instead of being tied to
        the new sample.
        """
        self._require_writable()
        check_name(maps.variant, "variant name")
        sample = self._sample_commit(sample_id)
        if sample_version is not None and sample["token"] != sample_version:
            raise SampleError(
                sample_id,
                f"maps/{maps.variant}",
                "the sample was rewritten while these maps were computed; explain it again",
            )
        if not overwrite and self._maps_commit(sample_id, maps.variant) is not None:
            raise SampleError(sample_id, f"maps/{maps.variant}", "already stored; pass overwrite=True to replace it")
        maps.validate(sample_id, _commit_dims(sample, sample_id))
        prefix = f"samples/{sample_id}/maps/{maps.variant}"
        extra = {"variant": maps.variant, "sample_token": sample["token"]}
        self._commit(prefix, maps.values(), MAPS_FIELDS, extra, MAPS_ZSTD_LEVEL)


def _raise(sample_id: str, field: str, problem: str) -> None:
    raise SampleError(sample_id, field, problem)


def _commit_dims(commit: dict[str, Any], sample_id: str) -> dict[str, int]:
    """N, M, V and K of a committed sample, from its field table and vision blocks."""
    table, attrs = commit["fields"], commit["json"]
    try:
        dims = {
            "N": int(table["answer_positions"]["shape"][0]),
            "M": int(table["context_positions"]["shape"][0]),
            "V": sum(VisionBlock.from_json(b).size for b in attrs.get("vision_blocks") or []),
        }
        if "candidate_ids" in table:
            dims["K"] = int(table["candidate_ids"]["shape"][1])
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise SampleError(sample_id, "commit", f"its field table is damaged ({exc!r}); {REENCODE}") from None
    return dims


def create_run(location: str | os.PathLike, info: RunInfo, exist_ok: bool = False) -> Run:
    """Create an empty run store at a path or URL (or open it for appending if `exist_ok`)."""
    objects = objects_at(location)
    if objects.exists(ROOT) or objects.exists("zarr.json"):
        if not exist_ok:
            raise StoreError(f"{location} already holds a store; open it with open_run(path, mode='a')")
        run = Run(location, writable=True)
        check_compatible(run.info, info, run.url)
        return run
    if not objects.is_empty():
        raise StoreError(f"{location} exists and is not empty; choose a new folder for the run")
    root = {
        "format": "tamx-run",
        "schema_version": SCHEMA[0],
        "schema_minor": SCHEMA[1],
        "run": info.to_json(),
        "created": _now(),
    }
    objects.write(ROOT, json.dumps(root, indent=1).encode(), atomic=True)
    return Run(location, writable=True)


def check_compatible(stored: RunInfo, incoming: RunInfo, path: str | os.PathLike) -> None:
    """Refuse to mix samples of different models in one run."""
    known = {"unknown", ""}
    if stored.model_id not in known and incoming.model_id not in known and stored.model_id != incoming.model_id:
        raise StoreError(
            f"{path} holds samples of model {stored.model_id!r}, not {incoming.model_id!r}; write them to another run"
        )


def open_run(location: str | os.PathLike, mode: str = "r") -> Run:
    """Open an existing run store (path or URL): mode "r" to read, "a" to also write samples and maps."""
    if mode not in ("r", "a"):
        raise StoreError(f"mode must be 'r' or 'a', got {mode!r}")
    return Run(location, writable=mode == "a")
