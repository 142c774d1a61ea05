"""The info stage: what a run store holds."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from tamx import open_run


def folder_size(path: Path) -> int:
    """Bytes of all files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_summary(run_path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready description of a run: model, samples, incomplete writes, variants, size."""
    run = open_run(run_path)
    samples = [run.sample_summary(sample_id) for sample_id in run.sample_ids()]
    variants = Counter(v for s in samples for v in s["variants"])
    return {
        "path": str(run.path),
        "schema_version": run.attrs["schema_version"],
        "created": run.attrs.get("created"),
        "model": run.info.to_json(),
        "samples": samples,
        "incomplete": run.incomplete_ids(),
        "variants": dict(sorted(variants.items())),
        "bytes": folder_size(run.path),
    }
