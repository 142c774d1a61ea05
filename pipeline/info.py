"""The info stage: what a run store holds, including what killed writers left behind."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from tamx import open_run
from tamx.errors import SampleError


def run_summary(run_path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready description of a run: model, samples, damaged and incomplete writes, variants, size."""
    run = open_run(run_path)
    samples, damaged = [], {}
    for sample_id in run.sample_ids():
        try:
            samples.append(run.sample_summary(sample_id))
        except SampleError as exc:
            damaged[sample_id] = str(exc)
    variants = Counter(v for s in samples for v in s["variants"])
    garbage = run.garbage()
    committed = {s["id"] for s in samples} | set(damaged)
    return {
        "path": run.url,
        "schema_version": run.attrs["schema_version"],
        "schema_minor": run.attrs.get("schema_minor", 0),
        "created": run.attrs.get("created"),
        "model": run.info.to_json(),
        "samples": samples,
        "damaged": damaged,
        "incomplete": sorted(s for s in garbage if s not in committed),
        "garbage": garbage,
        "variants": dict(sorted(variants.items())),
        "bytes": sum(size for _, size in run.objects.walk("")),
    }
