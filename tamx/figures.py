"""Paper-style PNG figures drawn with OpenCV and numpy (no LaTeX, no GUI toolkit).

Functions return BGR uint8 images; only the render stage writes files. OpenCV's Hershey
fonts draw ASCII only: other characters are shown as "?".
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .records import Maps, Sample
from .report import candidate_strings, colormap_lut, normalise_jointly, slice_media, token_strings

FONT = cv2.FONT_HERSHEY_SIMPLEX
PANEL = 320  # longest side of each image panel, pixels
WHITE = (255, 255, 255)
INK = (40, 35, 30)


def ascii_text(text: str) -> str:
    """What a Hershey font can draw: printable ASCII, the rest as '?'; newlines as spaces."""
    return "".join(c if 32 <= ord(c) < 127 else ("" if c in "\r" else " " if c in "\n\t" else "?") for c in text)


def overlay(image: np.ndarray, cells: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a uint8 map [H, W] (0..255) over a BGR image as a JET heatmap, upsampled bilinearly."""
    heat = cv2.resize(cells, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    colours = colormap_lut()[heat][..., ::-1]
    return cv2.addWeighted(image, 1.0 - alpha, np.ascontiguousarray(colours), alpha, 0.0)


def _decode(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _fit(image: np.ndarray, size: int = PANEL) -> np.ndarray:
    scale = size / max(image.shape[:2])
    shape = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, shape, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def vision_panels(sample: Sample, cells: np.ndarray, alpha: float = 0.5) -> list[np.ndarray]:
    """One overlaid panel per image and per video slice (its first frame) for a map row [V] uint8."""
    panels, offset = [], 0
    for block in sample.vision_blocks:
        t, h, w = block.grid
        for s in range(t):
            grid = cells[offset + s * h * w : offset + (s + 1) * h * w].reshape(h, w)
            media = slice_media(sample, block, s)
            base = _decode(sample.media[media[0]].data) if media else None
            if base is None:
                base = np.full((h * 16, w * 16, 3), 200, np.uint8)
            panels.append(overlay(_fit(base), grid, alpha))
        offset += block.size
    return panels


def _hstack(panels: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    height = max(p.shape[0] for p in panels)
    padded = [cv2.copyMakeBorder(p, 0, height - p.shape[0], 0, gap, cv2.BORDER_CONSTANT, value=WHITE) for p in panels]
    return np.hstack(padded)


def _vstack(rows: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [cv2.copyMakeBorder(r, 0, gap, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=WHITE) for r in rows]
    return np.vstack(padded)


def text_panel(
    words: Sequence[tuple[str, int | None]], width: int, scale: float = 0.5, highlight: int | None = None
) -> np.ndarray:
    """Wrapped tokens on white; each (text, value) with a value 0..255 gets a JET background."""
    lut = colormap_lut()
    line_height = int(26 * scale / 0.5)
    x, y, margin = 8, line_height, 8
    placed = []
    for index, (text, value) in enumerate(words):
        text = ascii_text(text)
        (tw, th), _ = cv2.getTextSize(text, FONT, scale, 1)
        if x + tw > width - margin and x > margin:
            x, y = margin, y + line_height
        placed.append((text, value, x, y, tw, th, index == highlight))
        x += tw
    canvas = np.full((y + line_height // 2, width, 3), 255, np.uint8)
    for text, value, tx, ty, tw, th, current in placed:
        if value:
            r, g, b = (int(c) for c in lut[value])
            tint = 0.15 + 0.7 * value / 255
            box = canvas[ty - th - 4 : ty + 5, tx : tx + tw]
            box[:] = (box * (1 - tint) + np.array([b, g, r]) * tint).astype(np.uint8)
        if current:
            cv2.rectangle(canvas, (tx - 1, ty - th - 5), (tx + tw, ty + 5), (235, 99, 37), 2)
        cv2.putText(canvas, text, (tx, ty), FONT, scale, INK, 1, cv2.LINE_AA)
    return canvas


def token_figure(sample: Sample, maps: Maps, index: int, alpha: float = 0.5) -> np.ndarray:
    """Answer token `index`: its map over every image / frame, the context coloured by relevance
    (normalised jointly with the map, Eq. 3) and the top-k candidates. BGR uint8."""
    strings = token_strings(sample)
    n = len(sample.answer_positions)
    earlier = maps.answer_relevance if maps.answer_relevance is not None else np.zeros((n, n), np.float32)
    cells, text = normalise_jointly(
        maps.tam[index : index + 1], np.concatenate([maps.text_relevance, earlier], axis=1)[index : index + 1]
    )
    panels = _hstack(vision_panels(sample, cells[0], alpha))
    m = len(sample.context_positions)
    context = [(strings[p], int(text[0, k])) for k, p in enumerate(sample.context_positions.tolist())]
    answer = [
        (strings[p], int(text[0, m + j]) if j < index else None) for j, p in enumerate(sample.answer_positions.tolist())
    ]
    width = max(panels.shape[1], 480)
    rows = [
        text_panel(
            [(f"token {index}: {strings[sample.answer_positions[index]]!r}  ({maps.variant})", None)], width, 0.6
        ),
        panels,
        text_panel(context, width),
        text_panel(answer, width, highlight=index),
    ]
    candidates = candidate_strings(sample)
    if candidates:
        logprobs = sample.candidate_logprobs
        probs = np.exp(logprobs[index]).tolist() if logprobs is not None else [None] * len(candidates[index])
        shown = [repr(c) + ("" if p is None else f" {100 * p:.1f}%") for c, p in zip(candidates[index], probs)]
        rows.append(text_panel([("top-k: " + "   ".join(shown), None)], width))
    return _vstack(rows)


def grid_figure(sample: Sample, maps: Maps, indices: Sequence[int], alpha: float = 0.5) -> np.ndarray:
    """One row per chosen answer token: its label, then its map over every image / frame."""
    strings = token_strings(sample)
    cells, _ = normalise_jointly(maps.tam[list(indices)])
    rows = []
    for row, index in enumerate(indices):
        panels = [_fit(p, PANEL // 2) for p in vision_panels(sample, cells[row], alpha)]
        label = text_panel([(f"{index}: {strings[sample.answer_positions[index]].strip()}", None)], 160, 0.5)
        label = cv2.copyMakeBorder(
            label,
            0,
            max(0, panels[0].shape[0] - label.shape[0]) if panels else 0,
            0,
            0,
            cv2.BORDER_CONSTANT,
            value=WHITE,
        )
        rows.append(_hstack([label, *panels]))
    return _vstack(rows)
