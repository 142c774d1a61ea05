"""`tamx upgrade RUN`: convert a schema-1 run (a local zarr v3 folder) to schema 2 in place.

Schema-1 runs held one zarr group per sample, one per maps variant, shared LM-head row packs
and a `staging/` folder of interrupted writes. The upgrade first moves them, unchanged, into
`RUN/schema-1/` (itself a schema-1 run; `zarr.json` moves last), so no schema-2 object is
ever written among schema-1 files. Then, one sample at a time, it converts the sample and its
variants, writes them as schema-2 objects, reads them back and compares them with what it
converted, and only when they are equal deletes that sample's schema-1 folder. Then it writes
`tamx-run.json` (the moment the run becomes schema 2). Whatever it cannot convert (a damaged
sample, a kept `staging/` entry) stays in `RUN/schema-1/` and is named with what to do; a
killed upgrade run again goes on from where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DiskFullError, SampleError, StoreError, TamxError
from .fields import SCHEMA
from .records import LMHead, Maps, Media, RunInfo, Sample, VisionBlock, maps_attribute, sample_values
from .store import ROOT, Run, _now, is_url

V1_ATTRS = "tamx"
HOLD = "schema-1"  # where the schema-1 files wait while they are converted
MOVED = ("lm_head", "staging", "samples", "zarr.json")  # moved into HOLD in this order: zarr.json last
GONE = "converted"  # in HOLD: converted samples' schema-1 folders, moved here to be deleted
MAPS_NAMES = (
    "cam",
    "eci",
    "tam",
    "text_relevance",
    "scale",
    "answer_relevance",
    "candidate_maps",
    "prompt_maps",
    "prompt_relevance",
)
# What reading hostile schema-1 files can raise: zarr's own errors are ValueErrors (or
# IndexErrors); damaged or hand-edited metadata gives KeyError/TypeError/AttributeError.
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, IndexError, OSError, RuntimeError)


@dataclass
class UpgradeReport:
    """What `upgrade_run` did: the samples now at schema 2, and what it kept unconverted."""

    samples: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # sample or path -> what is wrong and what to do


class _Unconvertible(Exception):
    """One schema-1 sample (or part of one) that cannot be converted; the text says why."""

    def __init__(self, where: str, problem: str = "", partial: bool = False) -> None:
        self.where, self.problem, self.partial = where, problem, partial  # partial: the sample itself converted
        super().__init__(f"{where}: {problem}" if problem else where)


def _read(where: str, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except SampleError as exc:  # names the sample already: keep its field and problem
        raise _Unconvertible(exc.field, exc.problem) from None
    except TamxError as exc:
        raise _Unconvertible(where, str(exc)) from None
    except UNREADABLE as exc:
        raise _Unconvertible(where, f"cannot be read ({type(exc).__name__}: {exc})") from None


def _write(where: str, write: Callable[[], None]) -> None:
    """Run a store write; a record the schema refuses is _Unconvertible, while what the system
    refuses (a full disk, a read-only folder) stops the upgrade: every later sample would fail too."""
    try:
        write()
    except DiskFullError:
        raise
    except SampleError as exc:
        raise _Unconvertible(exc.field, exc.problem) from None
    except TamxError as exc:
        raise _Unconvertible(where, str(exc)) from None


def _group(path: Path, where: str) -> Any:
    import zarr

    return _read(where, lambda: zarr.open_group(str(path), mode="r"))


def _attrs(group: Any, where: str) -> dict[str, Any]:
    attrs = _read(where, lambda: group.attrs.asdict().get(V1_ATTRS))
    if not isinstance(attrs, dict):
        raise _Unconvertible(where, f"has no {V1_ATTRS!r} attributes object (found {attrs!r:.60})")
    return attrs


def _array(group: Any, name: str) -> np.ndarray:
    return _read(name, lambda: np.asarray(group[name][...]))


class _Packs:
    """The schema-1 LM-head packs, read once each, kept in their stored dtype."""

    def __init__(self, root: Path) -> None:
        self.root, self.cache = root, {}

    def get(self, name: Any) -> LMHead:
        if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
            raise _Unconvertible("lm_head_packs", f"names a pack {name!r} that cannot be a pack folder")
        if name not in self.cache:
            where = f"lm_head/{name}"
            group = _group(self.root / "lm_head" / name, f"{where}/zarr.json")
            attrs = _attrs(group, f"{where}/zarr.json")
            self.cache[name] = _read(
                where,
                lambda: LMHead(
                    ids=_array(group, "ids"),
                    rows=_array(group, "rows"),
                    dtype=attrs["dtype"],
                    bias=_array(group, "bias") if "bias" in group else None,
                ),
            )
        return self.cache[name]


def _v1_sample(folder: Path, sample_id: str, packs: _Packs, staged: bool = False) -> Sample:
    """The sample stored in a schema-1 sample folder (_Unconvertible if it cannot be read).

    staged: a folder of 0.1's staging/, complete only once its attributes say when it was written."""
    group = _group(folder, "zarr.json")
    if staged:  # 0.1 wrote the attributes last, with the time
        attrs = _read("zarr.json", lambda: group.attrs.asdict().get(V1_ATTRS))
        if not isinstance(attrs, dict) or "written" not in attrs:
            raise _Unconvertible("zarr.json", "its write stopped before it finished (no 'written' attribute)")
    attrs = _attrs(group, "zarr.json")
    arrays = {name: _array(group, name) for name in ("hidden", "input_ids", "answer_positions", "context_positions")}
    for name in ("candidate_ids", "candidate_logprobs"):
        arrays[name] = _array(group, name) if name in group else None

    def build() -> Sample:
        media = [
            Media(m["item"], m["kind"], m["mime"], _array(group, f"media/{i}").tobytes(), m.get("frame"))
            for i, m in enumerate(attrs.get("media") or [])
        ]
        return Sample(
            id=sample_id,
            hidden_dtype=attrs["hidden_dtype"],
            vision_blocks=tuple(VisionBlock.from_json(b) for b in attrs["vision_blocks"]),
            lm_head=LMHead(ids=np.zeros(0, np.int64), rows=np.zeros((0, 0), np.float32)),
            tokens=attrs.get("tokens"),
            candidate_tokens=attrs.get("candidate_tokens"),
            media=media,
            messages=attrs.get("messages"),
            meta=attrs.get("meta") or {},
            **arrays,
        )

    sample = _read("sample attributes", build)
    needed = _read("input_ids", sample.needed_token_ids)
    parts: list[LMHead] = []
    names = attrs.get("lm_head_packs") or []
    for name in names if isinstance(names, list) else [names]:
        pack = packs.get(name)
        have = np.setdiff1d(np.intersect1d(needed, pack.ids), np.concatenate([p.ids for p in parts] or [[]]))
        if len(have):
            parts.append(_read(f"lm_head/{name}", lambda pack=pack, have=have: pack.subset(have)))
    if not parts:
        raise _Unconvertible("lm_head_rows", f"no LM-head pack it names ({names!r:.80}) holds its rows")
    sample.lm_head = _read(
        "lm_head_rows",
        lambda: LMHead(
            ids=np.concatenate([p.ids for p in parts]),
            rows=np.concatenate([p.rows for p in parts]),
            dtype=parts[0].dtype,
            bias=None if parts[0].bias is None else np.concatenate([p.bias for p in parts]),
        ),
    )
    return sample


def _v1_maps(folder: Path, variant: str, sample: Sample) -> Maps:
    """One schema-1 maps variant of `sample` (_Unconvertible if it cannot be read)."""
    where = f"maps/{variant}"
    group = _group(folder, f"{where}/zarr.json")
    attrs = _attrs(group, f"{where}/zarr.json")
    values: dict[str, Any] = {name: _array(group, name) for name in MAPS_NAMES if name in group}
    if "scale" in values and values["scale"].ndim == 1:
        # Schema 1 solved one scale over all images together: it is the scale each image got.
        groups = len({(b.kind, b.media) for b in sample.vision_blocks})
        values["scale"] = np.repeat(values["scale"][:, None], groups, axis=1)
    return _read(
        where,
        lambda: Maps(
            variant=variant,
            settings=attrs["settings"],
            nonfinite_hidden=attrs.get("nonfinite_hidden", 0),
            **{maps_attribute(name): value for name, value in values.items()},
        ),
    )


def _equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two records' field values are the same: arrays bit for bit, JSON by value."""
    if a.keys() != b.keys():
        return False
    for name, value in a.items():
        other = b[name]
        if isinstance(value, np.ndarray) or isinstance(other, np.ndarray):
            value, other = np.asarray(value), np.asarray(other)
            if value.dtype != other.dtype or value.shape != other.shape or value.tobytes() != other.tobytes():
                return False
        elif json.dumps(value, sort_keys=True, default=str) != json.dumps(other, sort_keys=True, default=str):
            return False
    return True


def _stored_equal(read: Callable[[], Any], values: Callable[[Any], dict[str, Any]], expected: dict[str, Any]) -> bool:
    try:
        return _equal(values(read()), expected)
    except TamxError:
        return False  # missing, damaged or not nameable: not what was converted


def _convert(folder: Path, sample_id: str, writer: Run, packs: _Packs, replace: bool, staged: bool = False) -> None:
    """Convert one schema-1 sample folder and its variants into `writer`, checked by reading
    them back; raise _Unconvertible naming what could not be (nothing is deleted here).

    replace: a schema-2 sample of that id that differs was written by an earlier, interrupted
    upgrade and is replaced; otherwise it was written since the upgrade and is left alone."""
    sample = _v1_sample(folder, sample_id, packs, staged)
    maps_folder = folder / "maps"
    names = sorted(p.name for p in maps_folder.iterdir() if p.is_dir()) if maps_folder.is_dir() else []
    variants, problems = [], []
    for variant in names:
        try:
            variants.append(_v1_maps(maps_folder / variant, variant, sample))
        except _Unconvertible as exc:
            problems.append(str(exc))
    expected = sample_values(sample)
    if not _stored_equal(lambda: writer.sample(sample_id), sample_values, expected):
        if sample_id in writer and not replace:
            raise _Unconvertible(
                "sample", "differs from the schema-2 sample of the same id written since the upgrade, which is kept"
            )
        _write("sample", lambda: writer.write_sample(sample, overwrite=True))
        if not _stored_equal(lambda: writer.sample(sample_id), sample_values, expected):
            raise _Unconvertible("sample", "reads back different from what was converted")
    for maps in variants:
        expected_maps = maps.values()

        def stored(maps: Maps = maps) -> Maps:
            return writer.maps(sample_id, maps.variant)

        if _stored_equal(stored, Maps.values, expected_maps):
            continue
        try:
            _write(f"maps/{maps.variant}", lambda maps=maps: writer.write_maps(sample_id, maps, overwrite=True))
        except _Unconvertible as exc:
            problems.append(str(exc))
            continue
        if not _stored_equal(stored, Maps.values, expected_maps):
            problems.append(f"maps/{maps.variant}: reads back different from what was converted")
    if problems:
        raise _Unconvertible("; ".join(problems), partial=True)


def _v1_root(path: Path) -> dict[str, Any]:
    """The tamx attributes of a schema-1 root `zarr.json` (StoreError if it is not one)."""
    try:
        attrs = json.loads(path.read_text())["attributes"][V1_ATTRS]
    except (OSError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise StoreError(
            f"{path.parent} is not a schema-1 tamx run (no readable zarr.json with tamx attributes)"
        ) from None
    if not isinstance(attrs, dict) or attrs.get("schema_version") != 1:
        found = attrs.get("schema_version") if isinstance(attrs, dict) else attrs
        raise StoreError(
            f"{path}: `tamx upgrade` converts schema 1, this run says {found!r:.60}; restore the file from a "
            "backup (a tamx 0.1 run says 1)"
        )
    if not isinstance(attrs.get("run", {}), dict):
        raise StoreError(
            f"{path}: its run attributes are {attrs['run']!r:.60}, not an object; restore it from a backup"
        )
    return attrs


def _move_aside(root: Path, hold: Path) -> None:
    """Move the schema-1 entries of `root` into `hold` (each a rename; resumable)."""
    hold.mkdir(exist_ok=True)
    for name in MOVED:
        if (root / name).exists() or (root / name).is_symlink():
            if (hold / name).exists():
                raise StoreError(
                    f"{root} has {name} both at its root and in {HOLD}/; move one of them away, then run "
                    f"`tamx upgrade {root}` again"
                )
            os.rename(root / name, hold / name)


_STAGED = {
    "samples": "an uncommitted copy of a sample that tamx 0.1 was writing when it was interrupted (0.1 listed "
    "the sample as incomplete)",
    "maps": "maps whose tamx 0.1 write was interrupted",
    "trash": "an earlier version of a sample that tamx 0.1 was replacing when it was interrupted",
    "lm_head": "LM-head rows whose tamx 0.1 write was interrupted (no sample uses them)",
}


def _leftovers(hold: Path) -> dict[str, str]:
    """What is left in `hold` besides sample folders, packs and group metadata: the entries of
    schema-1 `staging/` that hold files, and anything tamx 0.1 did not write. Kept, named."""
    kept = {}
    staging = hold / "staging"
    for kind in sorted(staging.iterdir()) if staging.is_dir() else []:
        for entry in sorted(kind.iterdir()) if kind.is_dir() else [kind]:
            if entry.is_file() or any(p.is_file() for p in entry.rglob("*")):
                what = _STAGED.get(kind.name, "a file tamx 0.1 left while writing")
                kept[str(entry.relative_to(hold.parent))] = (
                    f"{what}; not converted: re-encode that sample if you need it, then delete {entry}"
                )
    samples = hold / "samples"
    strays = [p for p in samples.iterdir() if not p.is_dir() and p.name != "zarr.json"] if samples.is_dir() else []
    for path in sorted(strays + [p for p in hold.iterdir() if p.name not in (*MOVED, GONE)]):
        kept[str(path.relative_to(hold.parent))] = f"not part of a tamx 0.1 run; kept: move or delete {path}"
    return kept


def upgrade_run(
    location: str | os.PathLike, wrap: Callable[[Iterator[str], int], Iterator[str]] | None = None
) -> UpgradeReport:
    """Convert the schema-1 run at `location` to schema 2 in place (see the module docstring).

    `wrap` may wrap the stream of sample ids (a progress bar). Deletes a schema-1 sample only
    after its schema-2 objects read back equal; the report names what was kept unconverted."""
    root = Path(location)
    if is_url(location):
        raise StoreError(f"{location}: schema-1 runs were local folders; upgrade the local copy, then upload it")
    hold = root / HOLD
    if (root / ROOT).is_file():
        writer = Run(root, writable=True)  # an upgrade that wrote its root: convert what is left
        replace = False
    else:
        source = hold / "zarr.json" if (hold / "zarr.json").is_file() else root / "zarr.json"
        attrs = _v1_root(source)
        info = RunInfo.from_json(attrs.get("run", {}), where=str(source))
        if (root / "zarr.json").exists():
            _move_aside(root, hold)
        header = {
            "format": "tamx-run",
            "schema_version": SCHEMA[0],
            "schema_minor": SCHEMA[1],
            "run": info.to_json(),
            "created": attrs.get("created") or _now(),
            "upgraded": _now(),
        }
        writer = Run(root, writable=True, attrs=header)
        replace = True
    report = UpgradeReport()
    samples = hold / "samples"
    ids = sorted(p.name for p in samples.iterdir() if p.is_dir()) if samples.is_dir() else []
    packs = _Packs(hold)
    gone = hold / GONE
    shutil.rmtree(gone, ignore_errors=True)  # samples a killed upgrade had converted
    jobs = {f"sample {i!r}": (i, samples / i) for i in ids}
    # A sample 0.1 was overwriting when it was killed between its two renames is only in
    # staging/samples/ID@...: that copy is converted (other staged copies are named below).
    staged: dict[str, list[Path]] = {}
    for entry in sorted((hold / "staging" / "samples").glob("*@*")):
        staged.setdefault(entry.name.rsplit("@", 1)[0], []).append(entry)
    jobs.update({str(f[0].relative_to(root)): (i, f[0]) for i, f in staged.items() if len(f) == 1 and i not in ids})
    for key in iter(jobs) if wrap is None else wrap(iter(jobs), len(jobs)):
        sample_id, folder = jobs[key]
        is_staged = folder.parent != samples
        try:
            _convert(folder, sample_id, writer, packs, replace, staged=is_staged)
        except _Unconvertible as exc:
            done = "the sample and its other variants are converted" if exc.partial else "not converted"
            if is_staged:
                fix = "re-encode the sample if you need it, then delete them"
            else:
                fix = f"restore them from a backup and run `tamx upgrade {root}` again, or "
                fix += "explain the sample again" if exc.partial else "re-encode the sample"
            report.kept[key] = f"{exc}; {done}, its schema-1 files are kept in {folder}: {fix}"
            continue
        # committed and read back equal: the schema-1 copy goes, in one rename (a kill while
        # deleting leaves no half sample to be mistaken for a damaged one)
        gone.mkdir(exist_ok=True)
        os.rename(folder, gone / folder.name)
        shutil.rmtree(gone / folder.name)
        report.converted.append(sample_id)
    if gone.is_dir():
        gone.rmdir()
    if not (root / ROOT).is_file():
        writer.objects.write(ROOT, json.dumps(writer.attrs, indent=1).encode(), atomic=True)
    if hold.is_dir():
        report.kept.update({k: v for k, v in _leftovers(hold).items() if k not in report.kept})
        if not report.kept:  # packs and metadata were kept only for what is still unconverted
            shutil.rmtree(hold)
    report.samples = Run(root).sample_ids()
    return report
