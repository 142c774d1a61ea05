"""Evaluation datasets with masks: COCO Caption, GranDf, OpenPSG and a generic folder layout.

Layouts (docs/eval.md has examples):
- coco: `annotations/instances_minival2014.json` (images and the 80 categories with their
  original ids), `annotations/captions_val2014.json`, `image/<12-digit id>.jpg` and
  `seg_label/<12-digit id>.png` whose pixel value is the COCO category id (0: none).
- grandf, openpsg: `anno.json`, a list of `[image path, description, label path,
  {category name: label id}]`, paths relative to the folder.
- folder: `anno.json` in the same shape; an entry may also be an object
  `{"id", "image", "captions" | "caption", "label", "categories", "prompt"}`, and `label` may
  name a folder of `<category name>.png` binary masks instead of one label PNG.

A record's id is the sample id the run must use for it (`write_manifest` writes them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import TamxError

DATASETS = ("coco", "grandf", "openpsg", "folder")
PROMPTS = {
    "coco": "Write a one-sentence caption for this image:",
    "grandf": "Write a description for this image using around two sentences:",
    "openpsg": "Write a description for this image using around three sentences:",
    "folder": "Write a one-sentence caption for this image:",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass
class Record:
    """One evaluation image: its file, its label (one PNG of ids, or a folder of binary masks),
    the category names -> label ids it may hold, and reference captions."""

    id: str
    image: Path
    label: Path
    categories: dict[str, int]
    captions: list[str] = field(default_factory=list)
    prompt: str | None = None

    def masks(self) -> dict[str, np.ndarray]:
        """Binary masks [H, W] bool of the categories present in the image (non-empty only)."""
        if self.label.is_dir():
            found = {}
            for name in self.categories:
                path = self.label / f"{name}.png"
                if path.is_file():
                    mask = read_label(path) > 0
                    if mask.any():
                        found[name] = mask
            return found
        label = read_label(self.label)
        present = set(np.unique(label).tolist())
        return {name: label == value for name, value in self.categories.items() if value in present and value != 0}


def read_label(path: Path) -> np.ndarray:
    """A label PNG as a 2-D integer array (a grey image, or a colour one with equal channels)."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise TamxError(f"cannot read the label image {path}")
    if label.ndim == 3:
        if not (np.array_equal(label[..., 0], label[..., 1]) and np.array_equal(label[..., 0], label[..., 2])):
            raise TamxError(f"{path}: a label PNG holds one id per pixel (grey), not colours")
        label = label[..., 0]
    return label


def _check_folder(data_dir: Path, *names: str) -> None:
    missing = [name for name in names if not (data_dir / name).exists()]
    if missing:
        raise TamxError(f"{data_dir} lacks {', '.join(missing)}; docs/eval.md shows the dataset layouts")


def load_coco(data_dir: Path) -> list[Record]:
    """COCO Caption minival as the authors format it (see the module docstring)."""
    data_dir = Path(data_dir)
    instances = "annotations/instances_minival2014.json"
    captions_file = "annotations/captions_val2014.json"
    _check_folder(data_dir, instances, captions_file, "image", "seg_label")
    meta = json.loads((data_dir / instances).read_text())
    categories = {c["name"]: int(c["id"]) for c in meta["categories"]}
    captions: dict[int, list[str]] = {}
    for item in json.loads((data_dir / captions_file).read_text()).get("annotations", []):
        captions.setdefault(int(item["image_id"]), []).append(item["caption"].strip())
    records = []
    for image in sorted(meta["images"], key=lambda i: int(i["id"])):
        name = f"{int(image['id']):012d}"
        records.append(
            Record(
                id=name,
                image=data_dir / "image" / f"{name}.jpg",
                label=data_dir / "seg_label" / f"{name}.png",
                categories=categories,
                captions=captions.get(int(image["id"]), []),
            )
        )
    return records


def _record_id(image: str, used: set[str]) -> str:
    base = _UNSAFE.sub("_", Path(image).stem).lstrip(".-") or "image"
    name, n = base[:190], 1
    while name in used:
        n += 1
        name = f"{base[:190]}-{n}"
    used.add(name)
    return name


def _entry(data_dir: Path, entry: Any, index: int, used: set[str]) -> Record:
    where = f"{data_dir / 'anno.json'} entry {index}"
    if isinstance(entry, dict):
        try:
            image, label, categories = entry["image"], entry["label"], entry["categories"]
        except KeyError as exc:
            raise TamxError(f"{where} lacks {exc}; entries need image, label and categories") from None
        captions = entry.get("captions") or ([entry["caption"]] if entry.get("caption") else [])
        name = entry.get("id")
        prompt = entry.get("prompt")
    elif isinstance(entry, list) and len(entry) >= 4:
        image, description, label, categories = entry[:4]
        captions, name, prompt = [description] if description else [], None, None
    else:
        raise TamxError(f"{where} is not [image path, description, label path, {{name: id}}]")
    if not isinstance(categories, dict):
        raise TamxError(f"{where}: categories must map names to label ids, got {type(categories).__name__}")
    return Record(
        id=str(name) if name is not None else _record_id(image, used),
        image=data_dir / image,
        label=data_dir / label,
        categories={str(k): int(v) for k, v in categories.items()},
        captions=[str(c) for c in captions],
        prompt=prompt,
    )


def load_anno(data_dir: Path) -> list[Record]:
    """GranDf, OpenPSG and the folder layout: `anno.json` (see the module docstring)."""
    data_dir = Path(data_dir)
    _check_folder(data_dir, "anno.json")
    entries = json.loads((data_dir / "anno.json").read_text())
    if not isinstance(entries, list):
        raise TamxError(f"{data_dir / 'anno.json'} must hold a list of entries")
    # Ids given explicitly are reserved first; the others come from the image file names.
    used = {str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e}
    return [_entry(data_dir, entry, index, used) for index, entry in enumerate(entries)]


def load_dataset(name: str, data_dir: str | Path) -> list[Record]:
    """The records of dataset `name` (one of DATASETS) stored under `data_dir`."""
    if name not in DATASETS:
        raise TamxError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise TamxError(f"dataset folder {data_dir} does not exist")
    records = load_coco(data_dir) if name == "coco" else load_anno(data_dir)
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise TamxError(f"{data_dir}: record ids are not unique")
    return records


def category_names(records: list[Record]) -> list[str]:
    """Every category name of the dataset, in first-seen order."""
    seen: dict[str, None] = {}
    for record in records:
        seen.update(dict.fromkeys(record.categories))
    return list(seen)
