"""What the HTML report shows, as one JSON-ready dict per sample: tokens, media and packed maps.

Maps travel as uint8 rows, each min-max normalised jointly with its text relevance (Eq. 3),
base64-encoded; the page turns them into colours with the same 256-entry colour map the PNG
figures use.
"""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np

from .records import Maps, RunInfo, Sample, VisionBlock
from .words import word_index

THUMBNAIL_SIZE = 160


def colormap_lut(name: str = "jet") -> np.ndarray:
    """The 256 RGB colours of an OpenCV colour map: [256, 3] uint8."""
    code = {"jet": cv2.COLORMAP_JET, "turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO}[name]
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], code)[:, 0]
    return np.ascontiguousarray(bgr[:, ::-1])


def pack_array(values: np.ndarray) -> dict[str, Any]:
    """A typed array as {"dtype", "shape", "data": base64 of its little-endian bytes}."""
    values = np.ascontiguousarray(values)
    if values.dtype not in (np.uint8, np.float32, np.uint16):
        raise ValueError(f"pack_array takes uint8, uint16 or float32, got {values.dtype}")
    return {
        "dtype": values.dtype.name,
        "shape": list(values.shape),
        "data": base64.b64encode(values.astype(values.dtype.newbyteorder("<")).tobytes()).decode("ascii"),
    }


def unpack_array(packed: dict[str, Any]) -> np.ndarray:
    """Inverse of `pack_array`."""
    dtype = np.dtype(packed["dtype"]).newbyteorder("<")
    return (
        np.frombuffer(base64.b64decode(packed["data"]), dtype=dtype)
        .reshape(packed["shape"])
        .astype(dtype.newbyteorder("="))
    )


def normalise_jointly(maps: np.ndarray, relevance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Eq. 3's N(map ⊥ r) row by row, quantised: uint8 maps [R, V] and relevance [R, Q].

    Each row of `maps` and the same row of `relevance` share one min and max, so image and
    text activations are comparable. A constant row becomes all zeros.
    """
    maps = np.asarray(maps, dtype=np.float32)
    rows = maps.reshape(len(maps), -1)
    joined = rows if relevance is None else np.concatenate([rows, relevance.reshape(len(rows), -1)], axis=1)
    if joined.shape[1] == 0:
        low = high = np.zeros((len(rows), 1), np.float32)
    else:
        low, high = joined.min(axis=1, keepdims=True), joined.max(axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)

    def quantise(values: np.ndarray) -> np.ndarray:
        scaled = (values.reshape(len(rows), -1) - low) / span
        return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8).reshape(values.shape)

    return quantise(maps), None if relevance is None else quantise(relevance)


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail(data: bytes, size: int = THUMBNAIL_SIZE) -> str | None:
    """A small JPEG data URI of an encoded image, or None if it cannot be decoded."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    scale = size / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(
            image,
            (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return _data_uri("image/jpeg", encoded.tobytes()) if ok else None


def token_strings(sample: Sample) -> list[str]:
    """The decoded string of every input id (`#id` where the store has none)."""
    if sample.tokens is not None:
        return list(sample.tokens)
    return [f"#{t}" for t in sample.input_ids.tolist()]


def candidate_strings(sample: Sample) -> list[list[str]]:
    """The decoded strings of the top-k candidates at every answer step."""
    if sample.candidate_ids is None:
        return []
    if sample.candidate_tokens is not None:
        return [list(row) for row in sample.candidate_tokens]
    return [[f"#{t}" for t in row] for row in sample.candidate_ids.tolist()]


def slice_media(sample: Sample, block: VisionBlock, slice_index: int) -> list[int]:
    """Indices into sample.media of the image, or of the video frames, one temporal slice covers."""
    if block.kind == "image":
        return [i for i, m in enumerate(sample.media) if m.item == block.media and m.kind == "image"]
    frames = block.frames[slice_index] if block.frames else ()
    return [i for i, m in enumerate(sample.media) if m.item == block.media and m.frame in frames]


def _media_views(sample: Sample) -> tuple[list[str], list[dict[str, Any]]]:
    """Data URIs of the media and, per vision block, its frames and map offset."""
    images = [_data_uri(m.mime, m.data) for m in sample.media]
    blocks, offset = [], 0
    for block in sample.vision_blocks:
        t, h, w = block.grid
        slices = [
            {
                "offset": offset + s * h * w,
                "images": slice_media(sample, block, s),
                "frames": list(block.frames[s]) if block.frames else [],
            }
            for s in range(t)
        ]
        blocks.append(
            {"kind": block.kind, "grid": [t, h, w], "label": f"{block.kind} {block.media + 1}", "slices": slices}
        )
        offset += block.size
    return images, blocks


def _segments(sample: Sample, strings: list[str]) -> list[dict[str, Any]]:
    """The sequence as runs: template text, prompt tokens, vision blocks, answer tokens."""
    role = np.zeros(len(sample.input_ids), dtype=np.int8)  # 0 template, 1 prompt, 2 answer, 3 vision
    index = np.full(len(sample.input_ids), -1, dtype=np.int64)
    role[sample.context_positions] = 1
    index[sample.context_positions] = np.arange(len(sample.context_positions))
    role[sample.answer_positions] = 2
    index[sample.answer_positions] = np.arange(len(sample.answer_positions))
    for b, block in enumerate(sample.vision_blocks):
        role[block.start : block.stop + block.unmapped] = 3
        index[block.start : block.stop + block.unmapped] = b
    kinds = {0: "template", 1: "prompt", 2: "answer", 3: "vision"}
    segments: list[dict[str, Any]] = []
    for position, (r, i) in enumerate(zip(role.tolist(), index.tolist())):
        kind = kinds[r]
        if kind == "vision":
            if not segments or segments[-1]["kind"] != "vision" or segments[-1]["block"] != i:
                segments.append({"kind": "vision", "block": i})
            continue
        if not segments or segments[-1]["kind"] != kind:
            segments.append({"kind": kind, "tokens": []})
        segments[-1]["tokens"].append([strings[position], i])
    return segments


def _variant_view(maps: Maps) -> dict[str, Any]:
    n = len(maps.tam)
    earlier = maps.answer_relevance if maps.answer_relevance is not None else np.zeros((n, n), np.float32)
    answer, text = normalise_jointly(maps.tam, np.concatenate([maps.text_relevance, earlier], axis=1))
    view: dict[str, Any] = {"settings": maps.settings, "answer": pack_array(answer), "answer_text": pack_array(text)}
    if maps.candidate_maps is not None:
        view["candidates"] = pack_array(normalise_jointly(maps.candidate_maps)[0])
    if maps.prompt_maps is not None:
        prompt, prompt_text = normalise_jointly(maps.prompt_maps, maps.prompt_relevance)
        view["prompt"] = pack_array(prompt)
        view["prompt_text"] = pack_array(prompt_text)
    return view


def page_data(sample: Sample, variants: dict[str, Maps], info: RunInfo) -> dict[str, Any]:
    """Everything one sample's page shows, JSON-ready."""
    strings = token_strings(sample)
    answer_strings = [strings[p] for p in sample.answer_positions.tolist()]
    images, blocks = _media_views(sample)
    probabilities = [] if sample.candidate_logprobs is None else np.exp(sample.candidate_logprobs).round(4).tolist()
    default = "tam" if "tam" in variants else next(iter(variants), None)
    return {
        "id": sample.id,
        "model": info.model_id,
        "notice": info.extra.get("notice"),
        "vision_size": sample.vision_size,
        "images": images,
        "blocks": blocks,
        "segments": _segments(sample, strings),
        "answer_words": word_index(answer_strings),
        "candidates": candidate_strings(sample),
        "candidate_probs": probabilities,
        "n_context": len(sample.context_positions),
        "variants": {name: _variant_view(maps) for name, maps in variants.items()},
        "default_variant": default,
        "lut": pack_array(colormap_lut()),
    }


def index_entry(sample: Sample, href: str) -> dict[str, Any]:
    """One row of the report's index: thumbnail, prompt and answer text, link."""
    strings = token_strings(sample)
    first_image = next((m for m in sample.media if m.kind in ("image", "video-frame")), None)
    return {
        "id": sample.id,
        "href": href,
        "thumbnail": thumbnail(first_image.data) if first_image else None,
        "prompt": "".join(strings[p] for p in sample.context_positions.tolist()).strip(),
        "answer": "".join(strings[p] for p in sample.answer_positions.tolist()).strip(),
        "vision": [f"{b.kind} {'x'.join(map(str, b.grid))}" for b in sample.vision_blocks],
    }
