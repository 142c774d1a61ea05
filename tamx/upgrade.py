"""`tamx upgrade RUN`: convert a schema-1 run (a local zarr v3 folder) to schema 2 in place.

Schema-1 runs held one zarr group per sample, one per maps variant and shared LM-head row
packs. The upgrade writes every sample and variant as schema-2 objects beside them (no name
collides), then the schema-2 root `tamx-run.json` (the moment the run becomes schema 2), then
removes the schema-1 files. A run killed before the root is written is still a schema-1 run;
killed after it, a schema-2 run whose leftovers the next `tamx upgrade` removes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SampleError, StoreError
from .fields import SCHEMA
from .records import REENCODE, LMHead, Maps, Media, RunInfo, Sample, VisionBlock, maps_attribute
from .store import ROOT, Run, _now, is_url

V1_ATTRS = "tamx"


def _group(path: Path):
    import zarr

    return zarr.open_group(str(path), mode="r")


def _array(group, name: str, sample_id: str) -> np.ndarray:
    try:
        return np.asarray(group[name][...])
    except (KeyError, ValueError, OSError, RuntimeError) as exc:
        raise SampleError(sample_id, name, f"cannot be read from the schema-1 store ({exc}); {REENCODE}") from None


class _Packs:
    """The schema-1 LM-head packs, read once each, kept in their stored dtype."""

    def __init__(self, root: Path) -> None:
        self.root, self.cache = root, {}

    def get(self, name: str, sample_id: str) -> LMHead:
        if name not in self.cache:
            group = _group(self.root / "lm_head" / name)
            self.cache[name] = LMHead(
                ids=_array(group, "ids", sample_id),
                rows=_array(group, "rows", sample_id),
                dtype=group.attrs[V1_ATTRS]["dtype"],
                bias=_array(group, "bias", sample_id) if "bias" in group else None,
            )
        return self.cache[name]


def _v1_sample(root: Path, sample_id: str, packs: _Packs) -> tuple[Sample, list[Maps]]:
    folder = root / "samples" / sample_id
    group = _group(folder)
    attrs = group.attrs[V1_ATTRS]
    names = ("hidden", "input_ids", "answer_positions", "context_positions")
    arrays = {name: _array(group, name, sample_id) for name in names}
    for name in ("candidate_ids", "candidate_logprobs"):
        arrays[name] = _array(group, name, sample_id) if name in group else None
    media = [
        Media(m["item"], m["kind"], m["mime"], _array(group, f"media/{i}", sample_id).tobytes(), m.get("frame"))
        for i, m in enumerate(attrs.get("media", []))
    ]
    sample = Sample(
        id=sample_id,
        hidden_dtype=attrs["hidden_dtype"],
        vision_blocks=tuple(VisionBlock.from_json(b) for b in attrs["vision_blocks"]),
        lm_head=LMHead(ids=np.zeros(0, np.int64), rows=np.zeros((0, 0), np.float32)),
        tokens=attrs.get("tokens"),
        candidate_tokens=attrs.get("candidate_tokens"),
        media=media,
        messages=attrs.get("messages"),
        meta=attrs.get("meta", {}),
        **arrays,
    )
    needed = sample.needed_token_ids()
    parts = []
    for name in attrs.get("lm_head_packs", []):
        pack = packs.get(name, sample_id)
        have = np.setdiff1d(np.intersect1d(needed, pack.ids), np.concatenate([p.ids for p in parts] or [[]]))
        if len(have):
            parts.append(pack.subset(have))
    if not parts:
        raise SampleError(sample_id, "lm_head_rows", f"no LM-head pack holds its rows; {REENCODE}")
    sample.lm_head = LMHead(
        ids=np.concatenate([p.ids for p in parts]),
        rows=np.concatenate([p.rows for p in parts]),
        dtype=parts[0].dtype,
        bias=None if parts[0].bias is None else np.concatenate([p.bias for p in parts]),
    )
    maps = []
    maps_folder = folder / "maps"
    stored = (
        sorted(p.name for p in maps_folder.iterdir() if (p / "zarr.json").is_file()) if maps_folder.is_dir() else []
    )
    for variant in stored:
        mgroup = _group(maps_folder / variant)
        mattrs = mgroup.attrs[V1_ATTRS]
        values: dict[str, Any] = {
            name: _array(mgroup, name, sample_id)
            for name in (
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
            if name in mgroup
        }
        if "scale" in values and values["scale"].ndim == 1:
            # Schema 1 solved one scale over all images together: it is the scale each image got.
            groups = len({(b.kind, b.media) for b in sample.vision_blocks})
            values["scale"] = np.repeat(values["scale"][:, None], groups, axis=1)
        maps.append(
            Maps(
                variant=variant,
                settings=mattrs["settings"],
                nonfinite_hidden=mattrs.get("nonfinite_hidden", 0),
                **{maps_attribute(name): value for name, value in values.items()},
            )
        )
    return sample, maps


def _is_v2(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name in (ROOT, "sample.json", "sample.0", "sample.1") or (
        "/maps/" in key and key.count("/") == 3 and name.rsplit(".", 1)[-1] in ("json", "0", "1")
    )


def _remove_v1(root: Path) -> None:
    """Delete every schema-1 file and folder of a run whose schema-2 root is written."""
    (root / "zarr.json").unlink(missing_ok=True)
    for name in ("lm_head", "staging"):
        shutil.rmtree(root / name, ignore_errors=True)
    samples = root / "samples"
    (samples / "zarr.json").unlink(missing_ok=True)
    for folder in sorted(samples.iterdir()) if samples.is_dir() else []:
        for path in sorted(folder.rglob("*"), reverse=True):
            key = str(path.relative_to(root))
            if path.is_file() and not _is_v2(key):
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def upgrade_run(
    location: str | os.PathLike, wrap: Callable[[Iterator[str], int], Iterator[str]] | None = None
) -> list[str]:
    """Convert the schema-1 run at `location` to schema 2 in place; return the sample ids.

    `wrap` may wrap the stream of sample ids (a progress bar)."""
    root = Path(location)
    if is_url(location):
        raise StoreError(f"{location}: schema-1 runs were local folders; upgrade the local copy, then upload it")
    if (root / ROOT).is_file():
        if (root / "zarr.json").is_file() or (root / "lm_head").is_dir():
            _remove_v1(root)  # an upgrade killed while cleaning up
        return Run(root).sample_ids()
    try:
        attrs = json.loads((root / "zarr.json").read_text())["attributes"][V1_ATTRS]
    except (OSError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise StoreError(f"{root} is not a schema-1 tamx run (no readable zarr.json with tamx attributes)") from None
    if attrs.get("schema_version") != 1:
        raise StoreError(f"{root}: `tamx upgrade` converts schema 1, this run says {attrs.get('schema_version')!r}")
    info = RunInfo.from_json(attrs.get("run", {}), where=f"{root}/zarr.json")
    header = {
        "format": "tamx-run",
        "schema_version": SCHEMA[0],
        "schema_minor": SCHEMA[1],
        "run": info.to_json(),
        "created": attrs.get("created") or _now(),
        "upgraded": _now(),
    }
    writer = Run(root, writable=True, attrs=header)
    folder = root / "samples"
    ids = sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file()) if folder.is_dir() else []
    packs = _Packs(root)
    stream = iter(ids) if wrap is None else wrap(iter(ids), len(ids))
    for sample_id in stream:
        sample, maps = _v1_sample(root, sample_id, packs)
        writer.write_sample(sample, overwrite=True)
        for variant in maps:
            writer.write_maps(sample_id, variant, overwrite=True)
    writer.objects.write(ROOT, json.dumps(header, indent=1).encode(), atomic=True)
    _remove_v1(root)
    return ids
