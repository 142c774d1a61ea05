"""`tamx shapes`: a shapes-world folder dataset with the manifests that encode it for the demo benchmark.

The folder holds the `folder` layout `tamx eval` reads (tamx.shapes.write_folder_dataset) and two
manifests for `tamx encode`, both with the prompt the demo model was trained on:
`manifest.jsonl` lets the model answer (its captions are scored against the truth by
`tamx eval`), `manifest-true.jsonl` gives the true caption as the answer (teacher forcing, so
that every colour and shape word of the scene is explained and scored against its object).
Image paths in the manifests are relative to the folder (encode resolves them against it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tamx.datasets import load_dataset, manifest_lines
from tamx.errors import TamxError
from tamx.shapes import write_folder_dataset

from ..files import write_text


@dataclass
class ShapesDataset:
    """What `write_shapes_dataset` wrote: the folder, its two manifests and the number of scenes."""

    folder: Path
    manifest: Path
    manifest_true: Path
    scenes: int


def write_shapes_dataset(out: str | Path, scenes: int, seed: int, overwrite: bool = False) -> ShapesDataset:
    """Write `scenes` scenes drawn from `seed` to `out` as a folder dataset, with both manifests."""
    folder = Path(out)
    if scenes < 1:
        raise TamxError(f"--scenes must be at least 1, got {scenes}")
    if (folder / "anno.json").exists() and not overwrite:
        raise TamxError(f"{folder} already holds a dataset (anno.json); give another --out, or --overwrite")
    write_folder_dataset(folder, scenes, seed=seed)
    lines = manifest_lines("folder", folder)
    for line in lines:  # image paths relative to the folder, so that it can be moved
        for item in line["messages"][0]["content"]:
            if item["type"] == "image":
                item["image"] = Path(item["image"]).relative_to(folder.resolve()).as_posix()
    truth = {r.id: r.captions[0] for r in load_dataset("folder", folder)}
    paths = folder / "manifest.jsonl", folder / "manifest-true.jsonl"
    write_text(paths[0], "".join(json.dumps(line) + "\n" for line in lines))
    write_text(paths[1], "".join(json.dumps({**line, "answer": truth[line["id"]]}) + "\n" for line in lines))
    return ShapesDataset(folder, paths[0], paths[1], scenes)
