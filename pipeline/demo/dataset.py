"""`tamx shapes`: a shapes-world folder dataset with the manifests that encode it for the demo benchmark.

The folder holds the `folder` layout `tamx eval` reads (`write_folder_dataset`) and two
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

import cv2
import numpy as np

from tamx.datasets import load_dataset, manifest_lines
from tamx.errors import TamxError
from tamx.pointing import WORD_CLASSES_FILE
from tamx.shapes import COLOURS, PROMPT, SHAPES, Scene, scenes, word_classes

from ..files import write_text


def write_scene_files(scene: Scene, folder: Path, sample_id: str) -> dict:
    """Write the image and the per-word masks of one scene under `folder`; returns its anno.json entry."""
    image_path = Path("images") / f"{sample_id}.png"
    label_path = Path("masks") / sample_id
    (folder / label_path).mkdir(parents=True, exist_ok=True)
    (folder / image_path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(folder / image_path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {folder / image_path}")
    categories = {}
    for obj in scene.objects:
        for name in (obj.colour, obj.shape):
            if not cv2.imwrite(str(folder / label_path / f"{name}.png"), obj.mask.astype(np.uint8) * 255):
                raise OSError(f"cannot write {folder / label_path / name}.png")
    # ids are fixed per word so that the same word has the same id across the dataset
    all_words = list(COLOURS) + list(SHAPES)
    for obj in scene.objects:
        categories[obj.colour] = all_words.index(obj.colour) + 1
        categories[obj.shape] = all_words.index(obj.shape) + 1
    return {
        "id": sample_id,
        "image": str(image_path),
        "label": str(label_path),
        "categories": categories,
        "caption": scene.caption,
        "prompt": PROMPT,
    }


def write_folder_dataset(out: str | Path, n: int, seed: int = 0, **kwargs) -> list[dict]:
    """Write `n` scenes as a `folder` dataset (anno.json, images/, masks/<id>/<word>.png, word_classes.json)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    entries = [write_scene_files(s, folder, f"shapes-{i:05d}") for i, s in enumerate(scenes(seed, n, **kwargs))]
    (folder / WORD_CLASSES_FILE).write_text(json.dumps(word_classes(), indent=1))
    (folder / "anno.json").write_text(json.dumps(entries, indent=1))
    return entries


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
