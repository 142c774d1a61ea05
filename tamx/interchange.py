"""Single-sample interchange as safetensors (tensor names in docs/store.md).

Required tensors: hidden, input_ids, lm_head_ids, lm_head_rows, vision_starts, vision_grids,
answer_positions, context_positions. Everything else is optional; the JSON metadata under the
key "tamx" carries ids, strings, messages and settings.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from .dtypes import encode_dtype, to_float32
from .errors import SampleError, TamxError
from .layout import grid_boxes, with_grid_boxes
from .records import SCHEMA_VERSION, LMHead, Maps, Media, RunInfo, Sample, VisionBlock

REQUIRED = (
    "hidden",
    "input_ids",
    "lm_head_ids",
    "lm_head_rows",
    "vision_starts",
    "vision_grids",
    "answer_positions",
    "context_positions",
)
MAPS_REQUIRED = ("maps.cam", "maps.eci", "maps.tam", "text_relevance")
MAPS_TENSORS = {
    "maps.cam": "cam",
    "maps.eci": "eci",
    "maps.tam": "tam",
    "maps.scale": "scale",
    "text_relevance": "text_relevance",
    "answer_relevance": "answer_relevance",
    "maps.candidates": "candidate_maps",
    "maps.prompt": "prompt_maps",
    "prompt_relevance": "prompt_relevance",
}


def export_sample(path: str | os.PathLike, sample: Sample, info: RunInfo, maps: Maps | None = None) -> None:
    """Write one sample (and optionally one maps variant) to a safetensors file."""
    head = sample.lm_head
    rows, bias = head.weights(head.ids)
    tensors: dict[str, np.ndarray] = {
        "hidden": sample.hidden_float32(),
        "input_ids": sample.input_ids,
        "lm_head_ids": head.ids,
        "lm_head_rows": rows,
        "vision_starts": np.array([b.start for b in sample.vision_blocks], dtype=np.int64),
        "vision_grids": np.array([b.grid for b in sample.vision_blocks], dtype=np.int64).reshape(-1, 3),
        "answer_positions": sample.answer_positions,
        "context_positions": sample.context_positions,
    }
    tensors["vision_boxes"], tensors["vision_grid_blocks"] = grid_boxes(sample.vision_blocks)
    if bias is not None:
        tensors["lm_head_bias"] = bias
    if sample.candidate_ids is not None:
        tensors["candidate_ids"] = sample.candidate_ids
    if sample.candidate_logprobs is not None:
        tensors["candidate_logprobs"] = sample.candidate_logprobs
    if sample.answer_logprobs is not None:
        tensors["answer_logprobs"] = sample.answer_logprobs
    for index, item in enumerate(sample.media):
        tensors[f"media.{index}"] = np.frombuffer(item.data, dtype=np.uint8)
    meta: dict[str, Any] = {
        "format": "tamx-sample",
        "schema_version": SCHEMA_VERSION,
        "sample_id": sample.id,
        "run": info.to_json(),
        "hidden_dtype": sample.hidden_dtype,
        "lm_head_dtype": head.dtype,
        "vision_blocks": [b.to_json() for b in sample.vision_blocks],
        "tokens": sample.tokens,
        "candidate_tokens": sample.candidate_tokens,
        "messages": sample.messages,
        "meta": sample.meta,
        "media": [{"item": m.item, "kind": m.kind, "mime": m.mime, "frame": m.frame} for m in sample.media],
    }
    if maps is not None:
        present = maps.arrays()
        for tensor, field in MAPS_TENSORS.items():
            if field in present:
                tensors[tensor] = np.asarray(present[field], dtype=np.float32)
        meta["maps"] = {"variant": maps.variant, "settings": maps.settings, "nonfinite_hidden": maps.nonfinite_hidden}
    tensors = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    save_file(tensors, str(path), metadata={"tamx": json.dumps(meta)})


def _id_from_filename(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", path.stem).lstrip(".-") or "sample"
    return stem[:200]


def _lossless_in(values: np.ndarray, dtype: str) -> bool:
    """Whether float32 `values` survive a round trip through `dtype` unchanged."""
    return np.array_equal(to_float32(encode_dtype(values, dtype), dtype), values, equal_nan=True)


def _stored_dtype(named: str, *parts: np.ndarray) -> str:
    """The dtype the exporter named, if every part is exactly representable in it, else float32."""
    return named if all(_lossless_in(p, named) for p in parts) else "float32"


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The tamx JSON metadata of a safetensors file ({} when it has none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        raw = (handle.metadata() or {}).get("tamx")
    return json.loads(raw) if raw else {}


def import_sample(path: str | os.PathLike) -> tuple[Sample, RunInfo, Maps | None]:
    """Read one sample file written by `export_sample` or by hand (required tensors only)."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
        meta = read_metadata(path)
    except (SafetensorError, OSError, json.JSONDecodeError, ValueError) as exc:
        raise TamxError(f"{path}: not a readable safetensors file ({exc})") from None
    sample_id = meta.get("sample_id") or _id_from_filename(path)
    missing = [name for name in REQUIRED if name not in tensors]
    if missing:
        raise SampleError(sample_id, missing[0], f"{path} lacks required tensor(s) {', '.join(missing)}")
    if meta.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise SampleError(
            sample_id,
            "schema_version",
            f"{path} was written with schema {meta['schema_version']}, this tamx reads {SCHEMA_VERSION}",
        )
    starts, grids = tensors["vision_starts"].reshape(-1), tensors["vision_grids"].reshape(-1, 3)
    if len(starts) != len(grids):
        raise SampleError(sample_id, "vision_grids", f"{len(grids)} grids for {len(starts)} vision_starts")
    described = meta.get("vision_blocks") or []
    blocks = []
    for index, (start, grid) in enumerate(zip(starts.tolist(), grids.tolist())):
        extra = described[index] if index < len(described) else {}
        blocks.append(
            VisionBlock.from_json(
                {**extra, "start": start, "grid": grid, "kind": extra.get("kind", "video" if grid[0] > 1 else "image")}
            )
        )
    if "vision_boxes" in tensors:  # without them: the blocks' JSON boxes, else the whole image (assumed)
        try:
            owners = tensors.get("vision_grid_blocks", np.arange(len(blocks)))
            blocks = with_grid_boxes(blocks, tensors["vision_boxes"], owners)
        except ValueError as exc:
            raise SampleError(sample_id, "vision_boxes", str(exc)) from None
    hidden = tensors["hidden"].astype(np.float32)
    hidden_dtype = _stored_dtype(meta.get("hidden_dtype", "float32"), hidden)
    rows = tensors["lm_head_rows"].astype(np.float32)
    bias = tensors["lm_head_bias"].astype(np.float32) if "lm_head_bias" in tensors else None
    head_dtype = _stored_dtype(meta.get("lm_head_dtype", "float32"), rows, *([] if bias is None else [bias]))
    try:
        head = LMHead(
            ids=tensors["lm_head_ids"],
            rows=encode_dtype(rows, head_dtype),
            dtype=head_dtype,
            bias=None if bias is None else encode_dtype(bias, head_dtype),
        )
    except ValueError as exc:
        raise SampleError(sample_id, "lm_head_ids", str(exc)) from None
    media = [
        Media(
            item=m["item"], kind=m["kind"], mime=m["mime"], data=tensors[f"media.{i}"].tobytes(), frame=m.get("frame")
        )
        for i, m in enumerate(meta.get("media", []))
        if f"media.{i}" in tensors
    ]
    sample = Sample(
        id=sample_id,
        hidden=encode_dtype(hidden, hidden_dtype),
        hidden_dtype=hidden_dtype,
        input_ids=tensors["input_ids"],
        vision_blocks=tuple(blocks),
        answer_positions=tensors["answer_positions"],
        context_positions=tensors["context_positions"],
        lm_head=head,
        candidate_ids=tensors.get("candidate_ids"),
        candidate_logprobs=tensors.get("candidate_logprobs"),
        answer_logprobs=tensors.get("answer_logprobs"),
        tokens=meta.get("tokens"),
        candidate_tokens=meta.get("candidate_tokens"),
        media=media,
        messages=meta.get("messages"),
        meta=meta.get("meta", {}),
    )
    info = RunInfo.from_json(meta.get("run", {}))
    return sample, info, _import_maps(sample, tensors, meta.get("maps", {}))


def _import_maps(sample: Sample, tensors: dict[str, np.ndarray], described: dict[str, Any]) -> Maps | None:
    """The maps variant a file carries, if any; cam, eci, tam and text_relevance go together."""
    present = {field: tensors[t] for t, field in MAPS_TENSORS.items() if t in tensors}
    if not present:
        return None
    lacking = [t for t in MAPS_REQUIRED if MAPS_TENSORS[t] not in present]
    if lacking:
        raise SampleError(sample.id, lacking[0], f"maps are partial: {', '.join(lacking)} missing")
    return Maps(
        variant=described.get("variant", "imported"),
        settings=described.get("settings", {}),
        nonfinite_hidden=described.get("nonfinite_hidden", 0),
        **present,
    )
