"""What the HTML report shows, as one JSON-ready dict per sample: tokens, turns, media and packed maps.

Maps travel as uint8 rows, base64-encoded, twice: min-max normalised jointly with their text
relevance (Eq. 3, scale `joint`) and each on its own range (scale `map`: the image map alone,
the text relevance alone), each with the raw scale of every row (its min, max and the map's own
max) so the page can print a colour bar in the model's units; the page turns the bytes into
colours with the same 256-entry colour map the figures use.
"""

from __future__ import annotations

import base64
import csv
import functools
import html
import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import jinja2
import numpy as np

from .faithfulness import CURVES, Faithfulness
from .layout import MapFrame, map_frames
from .methods import TITLES, default_filter, recorded_methods, variant_title
from .page import ComparisonData, FaithfulnessView, MethodView, PageData, VariantView
from .records import Maps, RunInfo, Sample
from .tokens import answer_logprobs, candidate_strings, printable_surrogates, token_strings
from .words import word_index

THUMBNAIL_SIZE = 160
log = logging.getLogger(__name__)


def json_ready(value: Any) -> Any:
    """`value` made fit for strict JSON and UTF-8, the one cleaning step of page data: a NaN or
    infinite number becomes null, a lone surrogate (from a decoded token, a message) becomes
    U+FFFD, numpy scalars and arrays become Python numbers and lists."""
    if isinstance(value, str):
        return printable_surrogates(value)
    if isinstance(value, (bool, type(None))):
        return value
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, dict):
        return {json_ready(str(k)): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    return json_ready(str(value))


def page_json(data: Any, **options: Any) -> str:
    """Page data as JSON text that any JSON parser (the page's, a browser's) accepts: `json_ready`
    first, then dumped strictly (a value it missed raises here instead of reaching a page)."""
    return json.dumps(json_ready(data), allow_nan=False, **options)


def finite_number(value: Any) -> float | None:
    """`value` as a finite float, or None when it is not a number (text, NaN, infinite, missing)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


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


def joint_scale(maps: np.ndarray, relevance: np.ndarray | None = None) -> np.ndarray:
    """Eq. 3's scale of every row: [R, 3] float32 of (min, max) over the map row and its text
    relevance together, and the map row's own max (0: the map is empty)."""
    rows = np.asarray(maps, dtype=np.float32).reshape(len(maps), -1)
    joined = rows if relevance is None else np.concatenate([rows, relevance.reshape(len(rows), -1)], axis=1)
    out = np.zeros((len(rows), 3), np.float32)
    if joined.shape[1]:
        out[:, 0], out[:, 1] = joined.min(axis=1), joined.max(axis=1)
    if rows.shape[1]:
        out[:, 2] = rows.max(axis=1)
    return out


def normalise_jointly(maps: np.ndarray, relevance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Eq. 3's N(map ⊥ r) row by row, quantised: uint8 maps [R, V] and relevance [R, Q].

    Each row of `maps` and the same row of `relevance` share one min and max (`joint_scale`),
    so image and text activations are comparable. A constant row becomes all zeros.
    """
    maps = np.asarray(maps, dtype=np.float32)
    scale = joint_scale(maps, relevance)
    low, high = scale[:, :1], scale[:, 1:2]
    span = np.where(high > low, high - low, 1.0)

    def quantise(values: np.ndarray) -> np.ndarray:
        scaled = (values.reshape(len(maps), -1) - low) / span
        return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8).reshape(values.shape)

    return quantise(maps), None if relevance is None else quantise(relevance)


SCALES = ("map", "joint")
# A reader expects an image map to show where in the image, on the map's own range: on the joint
# scale the text relevance (often the word just before) sets the top and the map looks empty.
DEFAULT_SCALE = "map"
SCALE_LABELS = {
    "map": "own range: the map alone, the text relevance alone",
    "joint": "joint range: the map and the text relevance together (Eq. 3)",
}


def normalise(
    maps: np.ndarray, relevance: np.ndarray | None = None, scale: str = DEFAULT_SCALE
) -> tuple[np.ndarray, np.ndarray | None]:
    """Maps [R, V] and their text relevance [R, Q] quantised to uint8 on `scale`: "joint" is
    Eq. 3 (`normalise_jointly`), "map" puts each row of the maps and of the relevance on its own range."""
    if scale == "joint":
        return normalise_jointly(maps, relevance)
    if scale != "map":
        raise ValueError(f"unknown scale {scale!r}: use one of {', '.join(SCALES)}")
    return normalise_jointly(maps)[0], None if relevance is None else normalise_jointly(relevance)[0]


def display_name(model_id: str) -> str:
    """What a page shows for a model: a hub id as it is, a local folder by its name only."""
    text = str(model_id)
    if text.startswith(("/", "~", ".", "\\")) or re.match(r"^[A-Za-z]:[\\/]", text) or text.count("/") > 1:
        return Path(text.replace("\\", "/").rstrip("/")).name or text
    return text


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@functools.lru_cache(maxsize=8)
def _decode(data: bytes) -> np.ndarray | None:
    """An encoded image decoded (read-only), or None. Cached for the last few images: a sample's
    page, its index thumbnail and its media sizes decode the same images (a 640x480 JPEG takes
    about 4 ms, a tenth of rendering a page: benchmarks/passive_store_bench.py)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is not None:
        image.setflags(write=False)
    return image


def _jpeg_uri(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> str | None:
    scale = size / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(
            image,
            (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return _data_uri("image/jpeg", encoded.tobytes()) if ok else None


def thumbnail(data: bytes, size: int = THUMBNAIL_SIZE) -> str | None:
    """A small JPEG data URI of an encoded image, or None if it cannot be decoded."""
    image = _decode(data)
    return None if image is None else _jpeg_uri(image, size)


def frame_media(sample: Sample, frames: Sequence[MapFrame]) -> list[list[int]]:
    """For every map frame, the indices into sample.media of the image, or the video frames, it covers."""
    out, slice_of = [], defaultdict(int)
    for frame in frames:
        block = sample.vision_blocks[frame.block]
        s = slice_of[frame.block]
        slice_of[frame.block] += 1
        if frame.kind == "image":
            out.append([i for i, m in enumerate(sample.media) if m.item == frame.media and m.kind == "image"])
        else:
            covered = block.frames[s] if block.frames and s < len(block.frames) else ()
            out.append([i for i, m in enumerate(sample.media) if m.item == frame.media and m.frame in covered])
    return out


def _media_sizes(sample: Sample) -> list[list[int] | None]:
    sizes = []
    for m in sample.media:
        image = _decode(m.data)
        sizes.append(None if image is None else [int(image.shape[1]), int(image.shape[0])])
    return sizes


def video_fps(sample: Sample) -> dict[int, float]:
    """Frames per second of each video item, where encode recorded it (a rate that is not a
    positive finite number is left out: those frames show no times)."""
    fps = sample.meta.get("video_fps")
    videos = sorted({b.media for b in sample.vision_blocks if b.kind == "video"})
    rates = {item: finite_number(f) for item, f in zip(videos, fps if isinstance(fps, list) else [])}
    return {item: rate for item, rate in rates.items() if rate is not None and rate > 0}


def _frames_view(sample: Sample) -> list[dict[str, Any]]:
    """Every drawn 2-D slice of a map, through `map_frames`: where it sits and what it shows."""
    frames = map_frames(sample.vision_blocks)
    fps = video_fps(sample)
    out, slice_of = [], defaultdict(int)
    for frame, media in zip(frames, frame_media(sample, frames)):
        block = sample.vision_blocks[frame.block]
        s = slice_of[frame.block]
        slice_of[frame.block] += 1
        covered = list(block.frames[s]) if block.frames and s < len(block.frames) else []
        rate = fps.get(frame.media) if frame.kind == "video" else None
        times = [covered[0] / rate, (covered[-1] + 1) / rate] if rate and covered else None
        out.append(
            {
                "offset": frame.offset,
                "height": frame.height,
                "width": frame.width,
                "block": frame.block,
                "kind": frame.kind,
                "media": frame.media,
                "slice": s,
                "box": None if frame.box is None else [float(x) for x in frame.box],
                "label": frame.label,
                "images": media,
                "frames": covered,
                "times": times,
            }
        )
    return out


def _message_turns(messages: list[Any] | None, include_system: bool) -> list[tuple[str, str]]:
    """(role, text) of every message that has text, as encode takes its context from them."""
    turns = []
    for message in messages or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        items = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        text = "".join(i.get("text") or "" for i in items if isinstance(i, dict) and i.get("type", "text") == "text")
        role = str(message.get("role", "user"))
        if text.strip() and (role != "system" or include_system):
            turns.append((role, text))
    return turns


def context_turns(sample: Sample, strings: list[str]) -> list[tuple[int, str]] | None:
    """For every context position, (turn number, role) from the sample's messages, or None when
    the context tokens cannot be matched to the messages' texts character for character."""
    include_system = bool((sample.meta.get("settings") or {}).get("include_system", False))
    turns = _message_turns(sample.messages, include_system)
    if not turns:
        return None
    lengths = [len("".join(text.split())) for _, text in turns]
    tokens = [len("".join(strings[p].split())) for p in sample.context_positions.tolist()]
    if sum(tokens) != sum(lengths):
        return None
    out, turn, used = [], 0, 0
    for count in tokens:
        while turn < len(turns) - 1 and used >= lengths[turn]:
            turn, used = turn + 1, 0
        out.append((turn, turns[turn][0]))
        used += count
    return out


def _segments(sample: Sample, strings: list[str]) -> list[dict[str, Any]]:
    """The sequence as runs: template text, prompt tokens (with their turn and role), vision
    blocks, answer tokens."""
    role = np.zeros(len(sample.input_ids), dtype=np.int8)  # 0 template, 1 prompt, 2 answer, 3 vision
    index = np.full(len(sample.input_ids), -1, dtype=np.int64)
    role[sample.context_positions] = 1
    index[sample.context_positions] = np.arange(len(sample.context_positions))
    role[sample.answer_positions] = 2
    index[sample.answer_positions] = np.arange(len(sample.answer_positions))
    for b, block in enumerate(sample.vision_blocks):
        role[block.start : block.stop + block.unmapped] = 3
        index[block.start : block.stop + block.unmapped] = b
    turns = context_turns(sample, strings)
    kinds = {0: "template", 1: "prompt", 2: "answer", 3: "vision"}
    segments: list[dict[str, Any]] = []
    for position, (r, i) in enumerate(zip(role.tolist(), index.tolist())):
        kind = kinds[r]
        if kind == "vision":
            if not segments or segments[-1]["kind"] != "vision" or segments[-1]["block"] != i:
                segments.append({"kind": "vision", "block": i})
            continue
        turn, who = (turns[i] if turns else (None, "prompt")) if kind == "prompt" else (None, None)
        if not segments or segments[-1]["kind"] != kind or (kind == "prompt" and segments[-1]["turn"] != turn):
            segment: dict[str, Any] = {"kind": kind, "tokens": []}
            if kind == "prompt":
                segment.update(turn=turn, role=who)
            segments.append(segment)
        segments[-1]["tokens"].append([strings[position], i])
    return segments


def _methods_view(sample: Sample) -> list[MethodView]:
    return [
        {"name": name, "title": TITLES.get(name, name), "layers": layers, "filter": default_filter(name)}
        for name, layers in recorded_methods(sample).items()
    ]


def _variant_view(maps: Maps, record: Faithfulness | None = None) -> VariantView:
    n = len(maps.final)
    earlier = maps.answer_relevance if maps.answer_relevance is not None else np.zeros((n, n), np.float32)
    relevance = np.concatenate([maps.text_relevance, earlier], axis=1)
    answer, text = normalise_jointly(maps.final, relevance)
    own, own_text = normalise(maps.final, relevance, "map")
    view: VariantView = {
        "settings": maps.settings,
        "label": variant_title(maps.variant, maps.settings),
        "answer": pack_array(answer),
        "answer_text": pack_array(text),
        "answer_scale": pack_array(joint_scale(maps.final, relevance)),
        # scale "map": the map and the text relevance each on its own range
        "answer_own": pack_array(own),
        "answer_text_own": pack_array(own_text),
        "answer_own_scale": pack_array(joint_scale(maps.final)),
        "answer_text_own_scale": pack_array(joint_scale(relevance)),
    }
    if maps.candidate_maps is not None:
        view["candidates"] = pack_array(normalise_jointly(maps.candidate_maps)[0])
        view["candidates_scale"] = pack_array(joint_scale(maps.candidate_maps.reshape(-1, maps.final.shape[1])))
    if maps.prompt_maps is not None:
        prompt, prompt_text = normalise_jointly(maps.prompt_maps, maps.prompt_relevance)
        view["prompt"] = pack_array(prompt)
        view["prompt_text"] = pack_array(prompt_text)
        view["prompt_scale"] = pack_array(joint_scale(maps.prompt_maps, maps.prompt_relevance))
        prompt_own, prompt_text_own = normalise(maps.prompt_maps, maps.prompt_relevance, "map")
        view["prompt_own"] = pack_array(prompt_own)
        view["prompt_text_own"] = pack_array(prompt_text_own)
        view["prompt_own_scale"] = pack_array(joint_scale(maps.prompt_maps))
        view["prompt_text_own_scale"] = pack_array(joint_scale(maps.prompt_relevance))
    if record is not None:
        view["faithfulness"] = _faithfulness_view(record)
    return view


def _faithfulness_view(record: Faithfulness) -> FaithfulnessView:
    """A record's curves for the page: the stored probabilities packed, the AUCs as
    `Faithfulness.aucs` computes them (the numbers `tamx eval` averages)."""
    names = [name for name in CURVES if getattr(record, name) is not None]
    aucs = record.aucs()
    return {
        "tokens": record.tokens.tolist(),
        "steps": len(record.fractions) - 1,
        "names": names,
        "curves": pack_array(np.stack([getattr(record, name) for name in names]).astype(np.float32)),
        "aucs": [[finite_number(v) for v in aucs[name].tolist()] for name in names],
        "settings": record.settings,
    }


def page_data(
    sample: Sample,
    variants: dict[str, Maps],
    info: RunInfo,
    run_name: str | None = None,
    shown: Sequence[str] | None = None,
    scale: str = DEFAULT_SCALE,
    faithfulness: dict[str, Faithfulness] | None = None,
) -> PageData:
    """Everything one sample's page shows, JSON-ready: the payload of `window.tamx.load(data)`
    (its keys: `tamx.page.PageData`).

    run_name labels the run (its folder's name) where several runs are compared; shown: the
    variants the page opens with side by side (default: tam, or the first); scale: the colour
    scale it opens with (`SCALES`; the page has a control to switch); faithfulness: the stored
    records (`tamx.faithfulness.stored_records`) by variant, drawn under the selected token's map
    (a variant without one has no `faithfulness` key)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: use one of {', '.join(SCALES)}")
    strings = token_strings(sample)
    answer_strings = [strings[p] for p in sample.answer_positions.tolist()]
    probabilities = [] if sample.candidate_logprobs is None else np.exp(sample.candidate_logprobs).round(4).tolist()
    logprobs = answer_logprobs(sample)
    default = "tam" if "tam" in variants else next(iter(variants), None)
    return {
        "id": sample.id,
        "model": display_name(info.model_id),
        "run": run_name,
        "notice": info.extra.get("notice"),
        "mode": sample.meta.get("mode", "generate"),
        "vision_size": sample.vision_size,
        "images": [_data_uri(m.mime, m.data) for m in sample.media],
        "image_sizes": _media_sizes(sample),
        "frames": _frames_view(sample),
        "blocks": [
            {"kind": b.kind, "grid": list(b.grid), "label": f"{b.kind} {b.media + 1}", "assumed": b.box is None}
            for b in sample.vision_blocks
        ],
        "segments": _segments(sample, strings),
        "answer_words": word_index(answer_strings),
        "answer_probs": None if logprobs is None else np.exp(logprobs).round(4).tolist(),
        "candidates": candidate_strings(sample),
        "candidate_probs": probabilities,
        "n_context": len(sample.context_positions),
        "variants": {name: _variant_view(maps, (faithfulness or {}).get(name)) for name, maps in variants.items()},
        "methods": _methods_view(sample),
        "default_variant": default,
        "shown_variants": [v for v in shown or [] if v in variants] or ([default] if default else []),
        "scale": scale,
        "lut": pack_array(colormap_lut()),
    }


def empty_page_data(model: str | None) -> PageData:
    """The page data of a page with no sample yet (`tamx serve` in model mode before the first
    generation): no media, no tokens, no maps."""
    return {
        "id": "",
        "model": display_name(model) if model else "",
        "notice": None,
        "vision_size": 0,
        "images": [],
        "blocks": [],
        "segments": [],
        "answer_words": [],
        "candidates": [],
        "candidate_probs": [],
        "run": None,
        "mode": "generate",
        "image_sizes": [],
        "frames": [],
        "answer_probs": None,
        "n_context": 0,
        "variants": {},
        "methods": [],
        "default_variant": None,
        "shown_variants": [],
        "scale": DEFAULT_SCALE,
        "lut": pack_array(colormap_lut()),
    }


def comparison_data(pages: Sequence[PageData]) -> ComparisonData:
    """One page that shows the same sample from several runs side by side (aligned by word)."""
    if not pages:
        raise ValueError("comparison_data needs at least one page")
    first = pages[0]
    return {
        "id": first["id"],
        "runs": list(pages),
        "default_variant": first["default_variant"],
        "shown_variants": first["shown_variants"],
        "scale": first["scale"],
    }


def map_thumbnail(sample: Sample, maps: Maps | None, size: int = THUMBNAIL_SIZE) -> str | None:
    """The first image (or frame) of a sample with the answer's mean map over it, as a JPEG data URI."""
    frames = map_frames(sample.vision_blocks)
    if not frames:
        return None
    media = frame_media(sample, frames[:1])[0]
    base = _decode(sample.media[media[0]].data) if media else None
    if base is None:
        return None
    if maps is None or not len(maps.final):
        return _jpeg_uri(base, size)
    first = frames[0]
    cells = maps.final.mean(axis=0)[first.offset : first.offset + first.size].reshape(first.height, first.width)
    quantised, _ = normalise_jointly(cells[None])
    image = _fit_box(base, first)
    heat = cv2.resize(quantised[0], (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    colours = np.ascontiguousarray(colormap_lut()[heat][..., ::-1])
    return _jpeg_uri(cv2.addWeighted(image, 0.5, colours, 0.5, 0.0), size)


def thumbnail_caption(sample: Sample, maps: Maps | None) -> str:
    """What an index thumbnail shows, in words: whose mean map, over which image or frame."""
    frames = map_frames(sample.vision_blocks)
    if not frames:
        return ""
    where = "image 1" if frames[0].kind == "image" else "the first video slice"
    if len(frames) > 1:
        where += f" (1 of {len(frames)}; its page shows all)"
    if maps is None or not len(maps.final):
        return where + ", no map"
    return f"{maps.variant}: mean map over the answer, {where}"


def _fit_box(image: np.ndarray, frame: MapFrame) -> np.ndarray:
    """The part of an image a map frame's box covers (the whole image when no box is recorded)."""
    if frame.box is None:
        return image
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (round(v) for v in frame.box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    return image[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else image


def eval_scores(run_path: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """Per sample, per dataset/variant: the mean Obj-IoU and Func-IoU of `tamx eval`'s entries.csv
    files under RUN/eval/*/ ({} when eval has not been run). A row whose score is not a finite
    number, or that lacks its sample or variant, is left out and counted in a warning."""
    scores: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in sorted(Path(run_path).glob("eval/*/entries.csv")):
        bad = 0
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            for row in csv.DictReader(handle):
                if row.get("score") in (None, ""):
                    continue
                score = finite_number(row["score"])
                if score is None or not row.get("sample") or not row.get("variant"):
                    bad += 1
                    continue
                column = "obj_iou" if row.get("kind") == "noun" else "func_iou"
                scores[row["sample"]][f"{path.parent.name}/{row['variant']}"][column].append(score)
        if bad:
            log.warning("%s: %d row(s) without a numeric score, sample or variant left out of the index", path, bad)
    return {
        sample: {key: {k: float(np.mean(v)) for k, v in columns.items()} for key, columns in by_key.items()}
        for sample, by_key in scores.items()
    }


def _answer_text(sample: Sample, strings: list[str]) -> str:
    return "".join(strings[p] for p in sample.answer_positions.tolist()).strip()


def run_answer(run: str, sample: Sample, maps: Maps | None) -> dict[str, Any]:
    """One run's part of an index row that compares runs: its answer and its map thumbnail."""
    return {
        "run": run,
        "answer": _answer_text(sample, token_strings(sample)),
        "forced": sample.meta.get("mode") == "teacher-forced",
        "map": map_thumbnail(sample, maps),
        "map_caption": thumbnail_caption(sample, maps),
    }


def index_entry(
    sample: Sample,
    href: str,
    maps: Maps | None = None,
    scores: dict[str, dict[str, float]] | None = None,
    runs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One row of the report's index: a map thumbnail, every image, the turns and the answer, eval
    scores; with several runs, `runs` (`run_answer` of each) instead of one answer and map."""
    strings = token_strings(sample)
    turns: list[dict[str, str]] = []
    for segment in _segments(sample, strings):
        if segment["kind"] != "prompt":
            continue
        text = "".join(t for t, _ in segment["tokens"])
        if turns and turns[-1]["role"] == segment["role"] and segment["turn"] is None:
            turns[-1]["text"] += " " + text
        else:
            turns.append({"role": segment["role"], "text": text})
    shown = [m for m in sample.media if m.kind == "image"]
    shown += [
        next(m for m in sample.media if m.kind == "video-frame" and m.item == item) for item in _video_items(sample)
    ]
    return {
        "id": sample.id,
        "href": href,
        "map": None if runs else map_thumbnail(sample, maps),
        "map_caption": None if runs else thumbnail_caption(sample, maps),
        "images": [uri for uri in (thumbnail(m.data, 96) for m in shown) if uri],
        "turns": [{"role": t["role"], "text": t["text"].strip()} for t in turns],
        "answer": _answer_text(sample, strings),
        "forced": sample.meta.get("mode") == "teacher-forced",
        "runs": runs or [],
        "vision": [f"{b.kind} {'x'.join(map(str, b.grid))}" for b in sample.vision_blocks],
        "scores": scores or {},
    }


def _video_items(sample: Sample) -> list[int]:
    return sorted({m.item for m in sample.media if m.kind == "video-frame"})


_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("vis_templates", ""),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
# Every `|tojson` of the templates goes through the one cleaning step: the JSON a page carries is valid.
_templates.policies["json.dumps_function"] = lambda value, **options: page_json(value, **options)


def template(name: str) -> jinja2.Template:
    """A template of the report (`sample.html.j2`, `index.html.j2`), autoescaped."""
    return _templates.get_template(name)


# Everything inline, nothing fetched: the page opens from disk and makes no request.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def sample_page(
    data: dict[str, Any],
    index_href: str | None = "../index.html",
    csp: str = REPORT_CSP,
    scripts: Sequence[str] = (),
    styles: Sequence[str] = (),
) -> str:
    """The self-contained HTML of one sample page from its `page_data` (or `comparison_data`).

    `tamx serve` adds its own script and style sheet (same-origin URLs) and a CSP that lets
    them talk to the server."""
    data = json_ready(data)
    return template("sample.html.j2").render(
        title=data["id"], index_href=index_href, data=data, csp=csp, scripts=scripts, styles=styles
    )


class SampleView:
    """A sample's interactive page for notebooks: `_repr_html_` shows it inline (an iframe's
    `srcdoc`, offline, sandboxed to scripts only); `html` is the page itself."""

    def __init__(
        self,
        sample: Sample,
        variants: dict[str, Maps],
        info: RunInfo,
        height: int = 720,
        shown: Sequence[str] | None = None,
    ) -> None:
        self.sample, self.variants, self.info, self.height, self.shown = sample, variants, info, height, shown

    @property
    def html(self) -> str:
        """The page itself (opening with the `shown` variants side by side)."""
        data = page_data(self.sample, self.variants, self.info, shown=self.shown)
        return sample_page(data, index_href=None)

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" sandbox="allow-scripts" '
            f'style="width: 100%; height: {int(self.height)}px; border: 1px solid #d9dde5;" '
            f'title="tamx: {html.escape(self.sample.id)}"></iframe>'
        )

    def __repr__(self) -> str:
        return f"SampleView({self.sample.id!r}, variants {', '.join(self.variants) or 'none'})"


def show(run: Any, sample_id: str, variant: str | Sequence[str] | None = None, height: int = 720) -> SampleView:
    """The interactive page of one sample of a run (a `Run` or its path), for display in Jupyter.

    variant: a name or several (shown side by side); default: every stored variant, tam shown."""
    from .explain import complete_maps
    from .store import Run, open_run

    opened = run if isinstance(run, Run) else open_run(run)
    stored = opened.variants(sample_id)
    wanted = stored if variant is None else [variant] if isinstance(variant, str) else list(variant)
    missing = [v for v in wanted if v not in stored]
    if missing:
        raise ValueError(
            f"sample {sample_id!r} has no variant {', '.join(missing)}; stored: {', '.join(stored) or 'none'} "
            "(run `tamx explain` to add one)"
        )
    sample = opened.sample(sample_id)
    maps = {name: complete_maps(sample, opened.maps(sample_id, name)) for name in wanted}
    return SampleView(sample, maps, opened.info, height, shown=None if variant is None else wanted)
