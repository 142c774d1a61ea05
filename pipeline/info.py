"""The info stage: what a run store holds, including what killed writers left behind."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from tamx import open_run


def run_summary(run_path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready description of a run: model, samples, damaged samples and variants (a damaged
    commit, a data object gone), incomplete writes, variants, size. One listing of the run and one
    read of each commit (`Run.survey`): no data object is read."""
    run = open_run(run_path)
    survey = run.survey()
    variants = Counter(v for s in survey.samples for v in s["variants"])
    return {
        "path": run.url,
        "schema_version": run.attrs["schema_version"],
        "schema_minor": run.attrs.get("schema_minor", 0),
        "created": run.attrs.get("created"),
        "model": run.info.to_json(),
        "samples": survey.samples,
        "damaged": survey.damaged,
        "damaged_maps": survey.damaged_maps,
        "incomplete": survey.incomplete,
        "garbage": survey.garbage,
        "variants": dict(sorted(variants.items())),
        "bytes": survey.bytes,
    }
