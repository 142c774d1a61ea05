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
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import TamxError
from .records import ID_RULE, name_problem

DATASETS = ("coco", "grandf", "openpsg", "folder")
PROMPTS = {
    "coco": "Write a one-sentence caption for this image:",
    "grandf": "Write a description for this image using around two sentences:",
    "openpsg": "Write a description for this image using around three sentences:",
    "folder": "Write a one-sentence caption for this image:",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass
class EvalImage:
    """One evaluation image: its file, its label (one PNG of ids, or a folder of binary masks),
    the category names -> label ids it may hold, and reference captions."""

    id: str
    image: Path
    label: Path
    categories: dict[str, int]
    captions: list[str] = field(default_factory=list)
    prompt: str | None = None

    def masks(self) -> dict[str, np.ndarray]:
        """Binary masks [H, W] bool of the categories present in the image (non-empty only).

        Every label must have the size of the image (when the image file is there) and of the
        record's other masks: one of another size is refused, never resized, since the maps
        are placed in the image's pixels.
        """
        reference = (image_size(self.image), f"its image {self.image}") if self.image.is_file() else None
        if self.label.is_dir():
            found = {}
            for name in self.categories:
                path = self.label / f"{name}.png"
                if path.is_file():
                    mask = _sized(read_label(path), path, reference) > 0
                    reference = reference or (mask.shape, f"the mask {path}")
                    if mask.any():
                        found[name] = mask
            return found
        label = _sized(read_label(self.label), self.label, reference)
        present = set(np.unique(label).tolist())
        return {name: label == value for name, value in self.categories.items() if value in present and value != 0}


Record = EvalImage  # its former name, for code written before (a "record" is what a run stores: tamx.records)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file."""
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pixels is None:
        raise TamxError(f"cannot read the image {path}: not an image format OpenCV decodes")
    return pixels.shape[0], pixels.shape[1]


def _sized(label: np.ndarray, path: Path, reference: tuple[tuple[int, int], str] | None) -> np.ndarray:
    """`label` if it has the reference size (its image's, or the first mask's), else raise."""
    if reference is not None and label.shape != tuple(reference[0]):
        (height, width), what = reference
        raise TamxError(
            f"the mask {path} is {label.shape[0]}x{label.shape[1]} pixels but {what} is {height}x{width}; "
            "a mask must have its image's size (eval does not resize masks)"
        )
    return label


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


def read_json(path: Path) -> Any:
    """A dataset's JSON file; a file that is not UTF-8 or not JSON is a TamxError naming the place."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise TamxError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TamxError(f"{path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TamxError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


LABEL_MAX = 65535  # label PNGs hold 8- or 16-bit ids


def _label_id(value: Any, where: str) -> int:
    """A category's label id: an integer pixel value of a label PNG."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LABEL_MAX:
        raise TamxError(
            f"{where}: the category id {value!r} is not an integer from 0 to {LABEL_MAX} (a label PNG's pixel value)"
        )
    return value


def _text(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise TamxError(f"{where}: {what} must be a non-empty string, got {value!r}")
    return value


def _check_folder(data_dir: Path, *names: str) -> None:
    missing = [name for name in names if not (data_dir / name).exists()]
    if missing:
        raise TamxError(f"{data_dir} lacks {', '.join(missing)}; docs/eval.md shows the dataset layouts")


def load_coco(data_dir: Path) -> list[EvalImage]:
    """COCO Caption minival as the authors format it (see the module docstring)."""
    data_dir = Path(data_dir)
    instances = "annotations/instances_minival2014.json"
    captions_file = "annotations/captions_val2014.json"
    _check_folder(data_dir, instances, captions_file, "image", "seg_label")
    meta = read_json(data_dir / instances)
    if not isinstance(meta, dict) or not all(isinstance(meta.get(key), list) for key in ("images", "categories")):
        raise TamxError(f"{data_dir / instances} must be an object with the lists 'images' and 'categories'")
    categories = {}
    for index, category in enumerate(meta["categories"]):
        where = f"{data_dir / instances} categories[{index}]"
        if not isinstance(category, dict):
            raise TamxError(f"{where} must be an object {{'id', 'name'}}")
        categories[_text(category.get("name"), where, "name")] = _label_id(category.get("id"), where)
    image_ids = []
    for index, image in enumerate(meta["images"]):
        value = image.get("id") if isinstance(image, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TamxError(f"{data_dir / instances} images[{index}]: the id {value!r} is not a non-negative integer")
        image_ids.append(value)
    captions: dict[int, list[str]] = {}
    listed = read_json(data_dir / captions_file)
    for index, item in enumerate(listed.get("annotations", []) if isinstance(listed, dict) else []):
        if not isinstance(item, dict) or not isinstance(item.get("caption"), str):
            raise TamxError(f"{data_dir / captions_file} annotations[{index}] needs an image_id and a caption string")
        captions.setdefault(item.get("image_id"), []).append(item["caption"].strip())
    records = []
    for image_id in sorted(image_ids):
        name = f"{image_id:012d}"
        records.append(
            EvalImage(
                id=name,
                image=data_dir / "image" / f"{name}.jpg",
                label=data_dir / "seg_label" / f"{name}.png",
                categories=categories,
                captions=captions.get(image_id, []),
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


def _entry(data_dir: Path, entry: Any, index: int, used: set[str]) -> EvalImage:
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
    image, label = _text(image, where, "the image path"), _text(label, where, "the label path")
    if isinstance(captions, str):
        captions = [captions]
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise TamxError(f"{where}: captions must be a list of strings, got {captions!r:.60}")
    if name is not None and (isinstance(name, bool) or not isinstance(name, (str, int))):
        raise TamxError(f"{where}: the id must be a string or an integer, got {name!r}")
    if name is not None and name_problem(str(name)) is not None:
        raise TamxError(f"{where}: the id {name_problem(str(name))}; it names a sample of the run, so use {ID_RULE}")
    if prompt is not None and not isinstance(prompt, str):
        raise TamxError(f"{where}: the prompt must be a string, got {prompt!r}")
    return EvalImage(
        id=str(name) if name is not None else _record_id(image, used),
        image=data_dir / image,
        label=data_dir / label,
        categories={str(k): _label_id(v, f"{where}, category {k!r}") for k, v in categories.items()},
        captions=captions,
        prompt=prompt,
    )


def load_anno(data_dir: Path) -> list[EvalImage]:
    """GranDf, OpenPSG and the folder layout: `anno.json` (see the module docstring)."""
    data_dir = Path(data_dir)
    _check_folder(data_dir, "anno.json")
    entries = read_json(data_dir / "anno.json")
    if not isinstance(entries, list):
        raise TamxError(f"{data_dir / 'anno.json'} must hold a list of entries")
    # Ids given explicitly are reserved first; the others come from the image file names.
    used = {str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e}
    return [_entry(data_dir, entry, index, used) for index, entry in enumerate(entries)]


def load_dataset(name: str, data_dir: str | Path) -> list[EvalImage]:
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


def category_names(records: list[EvalImage]) -> list[str]:
    """Every category name of the dataset, in first-seen order."""
    seen: dict[str, None] = {}
    for record in records:
        seen.update(dict.fromkeys(record.categories))
    return list(seen)


def manifest_lines(dataset: str, data_dir: str | os.PathLike, prompt: str | None = None) -> list[dict]:
    """The `tamx encode` manifest entries of a dataset: {"id", "messages"} in Hugging Face chat
    format. The prompt is the paper's for the dataset (PROMPTS), or `prompt`; a folder entry
    may carry its own. Image paths are absolute so encode can run from anywhere (the run
    stores them relative to the manifest)."""
    lines = []
    for record in load_dataset(dataset, data_dir):
        text = prompt or record.prompt or PROMPTS[dataset]
        content = [{"type": "image", "image": str(record.image.resolve())}, {"type": "text", "text": text}]
        lines.append({"id": record.id, "messages": [{"role": "user", "content": content}]})
    return lines
