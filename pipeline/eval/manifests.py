"""Manifests for `tamx encode`: one JSON line per dataset record, with the paper's prompt."""

from __future__ import annotations

import json
import os

from tamx.datasets import PROMPTS, load_dataset

from ..files import write_text


def manifest_lines(dataset: str, data_dir: str | os.PathLike, prompt: str | None = None) -> list[dict]:
    """The manifest entries of a dataset: {"id", "messages"} in Hugging Face chat format.

    The prompt is the paper's for the dataset (tamx.datasets.PROMPTS), or `prompt`; a folder
    entry may carry its own. Image paths are absolute so encode can run from anywhere.
    """
    lines = []
    for record in load_dataset(dataset, data_dir):
        text = prompt or record.prompt or PROMPTS[dataset]
        content = [{"type": "image", "image": str(record.image.resolve())}, {"type": "text", "text": text}]
        lines.append({"id": record.id, "messages": [{"role": "user", "content": content}]})
    return lines


def write_manifest(
    dataset: str, data_dir: str | os.PathLike, out_jsonl: str | os.PathLike, prompt: str | None = None
) -> int:
    """Write the manifest of `dataset` under `data_dir` to `out_jsonl` (written aside, then
    renamed); returns the number of lines."""
    lines = manifest_lines(dataset, data_dir, prompt)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    write_text(out_jsonl, text)
    return len(lines)
