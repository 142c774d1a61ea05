"""Write `tamx encode` manifests of a dataset (shared by encode and the demo's dataset writer)."""

from __future__ import annotations

import json
import os

from tamx.datasets import manifest_lines

from .files import write_text


def write_manifest(
    dataset: str, data_dir: str | os.PathLike, out_jsonl: str | os.PathLike, prompt: str | None = None
) -> int:
    """Write the manifest of `dataset` under `data_dir` to `out_jsonl` (written aside, then
    renamed); returns the number of lines."""
    lines = manifest_lines(dataset, data_dir, prompt)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    write_text(out_jsonl, text)
    return len(lines)
