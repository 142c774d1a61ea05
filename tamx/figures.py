"""Paper figures drawn with matplotlib's object API (headless: no pyplot, no GUI backend).

Functions return `matplotlib.figure.Figure` objects; only the render stage writes files
(`save_figure`). Every map panel goes through `tamx.layout.map_frames`, so each 2-D slice is
placed in its box in source pixels of its image or frame: processor padding past the image is
clipped, and parts of the image the model never saw (outside a crop's box) are shaded.
Text is drawn with DejaVu Sans (matplotlib's bundled font: Latin, Greek, Cyrillic, many
symbols), falling back glyph by glyph to a CJK font where one is installed (Noto Sans CJK,
WenQuanYi; Debian: `apt-get install fonts-noto-cjk`); SVG keeps text as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from matplotlib import font_manager, rc_context
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle
from matplotlib.textpath import TextPath

from .layout import MapFrame, map_frames
from .methods import variant_title
from .records import Maps, Sample
from .report import (
    DEFAULT_SCALE,
    SCALES,
    colormap_lut,
    frame_media,
    joint_scale,
    normalise,
    video_fps,
)
from .spans import DEFAULT_SPAN_RULE, SPAN_RULES
from .tokens import CONTROL_PICTURES, answer_logprobs, candidate_strings, token_strings, visible_whitespace
from .words import align_word, word_index

Item = int | tuple[int, int]  # an answer token, or a span (start, stop) of them

SINGLE_COLUMN = 3.5  # inches: one column of a two-column paper
DOUBLE_COLUMN = 7.0
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei")
# Where Debian puts them (fonts-noto-cjk, fonts-wqy-zenhei, fonts-wqy-microhei); matplotlib's font
# cache may predate their install, so they are registered by path.
FALLBACK_FILES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)


@dataclass
class FigureStyle:
    """Size and look of a figure: width in inches (None: one column, two for wide grids), DPI
    of raster output, colour map, overlay opacity, font size in points, and the colour scale:
    "map" (each map on its own range, the text relevance on its own) or "joint" (Eq. 3)."""

    width: float | None = None
    dpi: int = 300
    colormap: str = "jet"
    alpha: float = 0.5
    font_size: float = 7.0
    scale: str = DEFAULT_SCALE
    span_rule: str = DEFAULT_SPAN_RULE  # how a span's token maps become one (tamx.spans)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}: use one of {', '.join(SCALES)}")
        if self.span_rule not in SPAN_RULES:
            raise ValueError(f"unknown span rule {self.span_rule!r}: use one of {', '.join(SPAN_RULES)}")


# What a grid's colour bar (0 = min, 1 = max of each row) spans, per scale; short: the bar is short.
GRID_SCALE_LABELS = {
    "map": "each map's own range\n(scale: map)",
    "joint": "map with text relevance\n(scale: joint, Eq. 3)",
}


@cache
def font_families() -> tuple[str, ...]:
    """DejaVu Sans, then the installed CJK fonts that matplotlib falls back to per glyph."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    for path in FALLBACK_FILES:
        if Path(path).is_file() and not any(f.fname == path for f in font_manager.fontManager.ttflist):
            font_manager.fontManager.addfont(path)
            installed = {f.name for f in font_manager.fontManager.ttflist}
    return ("DejaVu Sans", *(name for name in FALLBACK_FONTS if name in installed))


@contextmanager
def _style(style: FigureStyle):
    params = {
        "font.family": list(font_families()),
        "font.size": style.font_size,
        "svg.fonttype": "none",
        "pdf.fonttype": 42,
        "axes.titlesize": style.font_size,
    }
    with rc_context(params):
        yield


def _cmap(style: FigureStyle) -> ListedColormap:
    return ListedColormap(colormap_lut(style.colormap) / 255.0, name=f"tamx-{style.colormap}")


def _decode_rgb(data: bytes) -> np.ndarray | None:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else image[..., ::-1]


def draw_frame(ax, sample: Sample, frame: MapFrame, media: list[int], cells: np.ndarray, style: FigureStyle) -> None:
    """One map slice [h, w] uint8 over its image (or first covered frame), placed in its box."""
    base = _decode_rgb(sample.media[media[0]].data) if media else None
    if base is None:
        base = np.full((frame.height * 16, frame.width * 16, 3), 200, np.uint8)
    height, width = base.shape[:2]
    ax.imshow(base, extent=(0, width, height, 0), interpolation="antialiased")
    x0, y0, x1, y1 = frame.box if frame.box is not None else (0, 0, width, height)
    ax.imshow(
        cells.astype(np.float32) / 255.0,
        cmap=_cmap(style),
        vmin=0.0,
        vmax=1.0,
        alpha=style.alpha,
        extent=(x0, x1, y1, y0),
        interpolation="bilinear",
    )
    if frame.box is not None:  # shade what the model never saw
        for rect in (
            (0, 0, width, y0),
            (0, y1, width, height - y1),
            (0, y0, x0, y1 - y0),
            (x1, y0, width - x1, y1 - y0),
        ):
            if rect[2] > 0 and rect[3] > 0:
                ax.add_patch(Rectangle(rect[:2], rect[2], rect[3], facecolor="black", alpha=0.55, linewidth=0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()


def _frame_name(frame: MapFrame, sample: Sample) -> str:
    if frame.kind == "video":
        if frame.frame is None:
            return frame.label
        rate = video_fps(sample).get(frame.media)
        return f"frame {frame.frame}" + (f" · {frame.frame / rate:.1f} s" if rate else "")
    images = sum(1 for b in sample.vision_blocks if b.kind == "image")
    return frame.label if images <= 1 and frame.label != "image" else f"image {frame.media + 1}"


def _grid(rows: int, columns: int, style: FigureStyle, aspect: float, label_width: float = 0.0) -> Figure:
    width = style.width or (SINGLE_COLUMN if columns <= 3 else DOUBLE_COLUMN)
    panel = (width - label_width - 0.6) / max(columns, 1)
    height = rows * panel * aspect + 0.45
    return Figure(figsize=(width, height), dpi=style.dpi, layout="constrained")


def _aspect(sample: Sample, frames: Sequence[MapFrame]) -> float:
    ratios = []
    for frame, media in zip(frames, frame_media(sample, frames)):
        image = _decode_rgb(sample.media[media[0]].data) if media else None
        ratios.append(image.shape[0] / image.shape[1] if image is not None else frame.height / frame.width)
    return max(ratios) if ratios else 1.0


def _colour_bar(figure: Figure, axes, style: FigureStyle, low: float = 0.0, high: float = 1.0, label: str = "") -> None:
    mappable = ScalarMappable(norm=Normalize(low, high), cmap=_cmap(style))
    bar = figure.colorbar(mappable, ax=axes, shrink=0.9, pad=0.02, aspect=30)
    bar.set_label(label, fontsize=style.font_size)
    bar.ax.tick_params(labelsize=style.font_size - 1)


def _token_label(sample: Sample, index: int) -> str:
    return visible_whitespace(token_strings(sample)[sample.answer_positions[index]])


def _phrase(sample: Sample, start: int, stop: int, limit: int = 32) -> str:
    """The text of answer tokens start..stop-1, on one line, shortened past `limit` characters."""
    strings = token_strings(sample)
    text = "".join(strings[p] for p in sample.answer_positions.tolist()[start:stop]).strip()
    text = " ".join(text.split()).translate(CONTROL_PICTURES)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _item_label(sample: Sample, item: Item) -> str:
    """A grid row's label: "3: token" or, for a span, "3–5: “the phrase”"."""
    if isinstance(item, tuple):
        return f"{item[0]}–{item[1] - 1}: “{_phrase(sample, *item)}”"
    return f"{item}: {_token_label(sample, item)}"


def _item_row(maps: Maps, rows: np.ndarray, item: Item, style: FigureStyle) -> np.ndarray:
    """The quantised map [V] of a token (its row of `rows`) or of a span (`Maps.span` on its own
    range: a span has no single text relevance to share a joint scale with)."""
    if isinstance(item, tuple):
        return normalise(maps.span(*item, rule=style.span_rule)[None], None, "map")[0][0]
    return rows[item]


def _relevance(maps: Maps) -> np.ndarray:
    """The text relevance of every answer token: context then earlier answer, [N, M + N]."""
    n = len(maps.final)
    earlier = maps.answer_relevance if maps.answer_relevance is not None else np.zeros((n, n), np.float32)
    return np.concatenate([maps.text_relevance, earlier], axis=1)


def _answer_rows(maps: Maps, scale: str = DEFAULT_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """The quantised answer maps [N, V] on `scale` and their raw (min, max, map max) [N, 3]."""
    relevance = _relevance(maps)
    ranges = joint_scale(maps.final, relevance) if scale == "joint" else joint_scale(maps.final)
    return normalise(maps.final, relevance, scale)[0], ranges


def _text_width(text: str, style: FigureStyle) -> float:
    """Width of a string in points in the figures' font (leading spaces count, trailing ones too)."""
    if not text.strip():
        return 0.32 * style.font_size * len(text)
    path = TextPath((0, 0), text, size=style.font_size, prop=FontProperties(family=list(font_families())))
    trailing = len(text) - len(text.rstrip())
    return float(path.get_extents().x1) + 0.32 * style.font_size * trailing


def _wrap(words: Sequence[tuple[str, int | None, bool]], width: float, style: FigureStyle) -> list[list[tuple]]:
    """Tokens laid out in lines of at most `width` points: [(x, text, value, current, w), ...] per line."""
    lines: list[list[tuple]] = [[]]
    x = 0.0
    for text, value, current in words:
        text = text.replace("\n", "⏎").replace("\t", " ").translate(CONTROL_PICTURES)
        w = _text_width(text, style)
        if x + w > width and lines[-1]:
            lines.append([])
            x = 0.0
            text = text.lstrip() or text
            w = _text_width(text, style)
        lines[-1].append((x, text, value, current, w))
        x += w
    return lines


def token_figure(sample: Sample, maps: Maps, index: int, style: FigureStyle | None = None) -> Figure:
    """Answer token `index`: its map over every image / frame with a colour bar in raw units
    (style.scale: the map's own min and max, or Eq. 3's joint ones), the token's probability, the
    top-k candidates, and the context and earlier answer coloured by their relevance to the token
    (on its own range, or with the map)."""
    style = style or FigureStyle()
    frames = map_frames(sample.vision_blocks)
    media = frame_media(sample, frames)
    cells, scale = _answer_rows(maps, style.scale)
    strings = token_strings(sample)
    m = len(sample.context_positions)
    relevance = _relevance(maps)[index : index + 1]
    _, text = normalise(maps.final[index : index + 1], relevance, style.scale)
    words = [(strings[p], int(text[0, k]), False) for k, p in enumerate(sample.context_positions.tolist())]
    words += [("  ⟶ ", None, False)]
    words += [
        (strings[p], int(text[0, m + j]) if j < index else None, j == index)
        for j, p in enumerate(sample.answer_positions.tolist()[: index + 1])
    ]
    width = style.width or (SINGLE_COLUMN if len(frames) <= 3 else DOUBLE_COLUMN)
    margin, line_height = 6.0, style.font_size * 1.7
    lines = _wrap(words, width * 72 - 2 * margin, style)
    text_height = (len(lines) * line_height + 2 * margin) / 72
    maps_height = (width - 0.6) / max(len(frames), 1) * _aspect(sample, frames) + 0.6
    lut = colormap_lut(style.colormap) / 255.0
    with _style(style):
        figure = Figure(figsize=(width, maps_height + text_height), dpi=style.dpi, layout="constrained")
        top, bottom = figure.subfigures(2, 1, height_ratios=[maps_height, text_height])
        axes = top.subplots(1, max(len(frames), 1), squeeze=False)[0]
        for ax, frame, items in zip(axes, frames, media):
            draw_frame(
                ax,
                sample,
                frame,
                items,
                cells[index, frame.offset : frame.offset + frame.size].reshape(frame.height, frame.width),
                style,
            )
            if len(frames) > 1:
                ax.set_title(_frame_name(frame, sample))
        low, high, peak = (float(x) for x in scale[index])
        what = "raw, the map's own range" if style.scale == "map" else "raw, map with text (Eq. 3)"
        _colour_bar(top, axes, style, low, high, what + ("; empty map" if peak <= 0 else ""))
        logprobs = answer_logprobs(sample)
        p = "" if logprobs is None else f"  p = {100 * np.exp(logprobs[index]):.1f}%"
        forced = " (teacher-forced)" if sample.meta.get("mode") == "teacher-forced" else ""
        heading = variant_title(maps.variant, maps.settings)
        title = f"token {index} “{_token_label(sample, index)}”{p}{forced} · {heading}"
        candidates = candidate_strings(sample)
        if candidates and sample.candidate_logprobs is not None:
            probs = np.exp(sample.candidate_logprobs[index])
            title += "\ntop-k: " + "  ".join(
                f"{visible_whitespace(c)} {100 * q:.0f}%" for c, q in zip(candidates[index], probs)
            )
        top.suptitle(title, fontsize=style.font_size)
        strip_width, strip_height = width * 72, text_height * 72
        for row, line in enumerate(lines):
            y = 1 - (margin + (row + 0.5) * line_height) / strip_height
            for k, (x, token, value, current, w) in enumerate(line):
                left = (margin + x) / strip_width
                if value or current:
                    # exactly the token's own advance, no padding: a box never covers its neighbours
                    tint = 0.15 + 0.7 * (value or 0) / 255
                    colour = (*lut[value or 0], tint) if value else (1, 1, 1, 0)
                    box = Rectangle(
                        (left, y - 0.45 * line_height / strip_height),
                        w / strip_width,
                        0.9 * line_height / strip_height,
                        transform=bottom.transSubfigure,
                        facecolor=colour,
                        edgecolor="#2563eb" if current else "none",
                        linewidth=0.8,
                        zorder=0,
                        gid=f"token-box-{row}-{k}",
                    )
                    bottom.add_artist(box)
                bottom.text(
                    left, y, token, transform=bottom.transSubfigure, va="center", zorder=1, gid=f"token-{row}-{k}"
                )
    return figure


def _rows_figure(
    panels: Sequence[Sequence[tuple[Sample, MapFrame, list[int], np.ndarray | None]]],
    row_labels: Sequence[str],
    column_titles: Sequence[str],
    style: FigureStyle,
    aspect: float,
    bar: tuple[float, float, str] | None = None,
) -> Figure:
    """A grid of map panels: rows x columns, a label per row, a title per column, one colour bar
    (0 to 1 of each row's range, or `bar`'s raw low, high and label)."""
    rows, columns = len(panels), max((len(r) for r in panels), default=0)
    with _style(style):
        figure = _grid(rows, columns, style, aspect, label_width=0.4)
        axes = figure.subplots(max(rows, 1), max(columns, 1), squeeze=False)
        for r, row in enumerate(panels):
            for c, (sample, frame, media, cells) in enumerate(row):
                ax = axes[r, c]
                if cells is None:
                    ax.set_axis_off()
                    ax.text(0.5, 0.5, "no such word", ha="center", va="center", transform=ax.transAxes)
                else:
                    draw_frame(ax, sample, frame, media, cells.reshape(frame.height, frame.width), style)
                if r == 0:
                    ax.set_title(column_titles[c])
            axes[r, 0].text(
                -0.04,
                0.5,
                row_labels[r],
                ha="right",
                va="center",
                transform=axes[r, 0].transAxes,
                fontsize=style.font_size,
            )
        if bar is None:
            _colour_bar(figure, axes, style, label=GRID_SCALE_LABELS[style.scale])
        else:
            _colour_bar(figure, axes, style, *bar)
    return figure


def variants_figure(
    sample: Sample, variants: dict[str, Maps], tokens: Sequence[Item], style: FigureStyle | None = None
) -> Figure:
    """Tokens x variants: one row per chosen answer token or span (start, stop) (one map by
    style.span_rule, labelled with its phrase), one column per variant and image / frame."""
    style = style or FigureStyle()
    frames = map_frames(sample.vision_blocks)
    media = frame_media(sample, frames)
    rows = {name: _answer_rows(maps, style.scale)[0] for name, maps in variants.items()}
    panels = []
    for item in tokens:
        cells = {name: _item_row(maps, rows[name], item, style) for name, maps in variants.items()}
        panels.append(
            [
                (sample, frame, items, cells[name][frame.offset : frame.offset + frame.size])
                for name in variants
                for frame, items in zip(frames, media)
            ]
        )
    titles = [
        variant_title(name, maps.settings) + ("" if len(frames) == 1 else f" · {_frame_name(f, sample)}")
        for name, maps in variants.items()
        for f in frames
    ]
    labels = [_item_label(sample, item) for item in tokens]
    return _rows_figure(panels, labels, titles, style, _aspect(sample, frames))


def runs_figure(
    runs: Sequence[tuple[str, Sample, dict[str, Maps]]], tokens: Sequence[int], style: FigureStyle | None = None
) -> Figure:
    """Tokens x runs: the words of the chosen answer tokens of the first run, and the same word in
    every other run's own answer (its own tokens; a word's map is the max over them)."""
    style = style or FigureStyle()
    if len(runs) < 2:
        raise ValueError("the tokens x runs layout needs two or more runs")
    first = runs[0][1]
    first_strings = [token_strings(first)[p] for p in first.answer_positions.tolist()]
    words = word_index(first_strings)
    panels, labels, titles = [], [], []
    for index in tokens:
        row = []
        for name, sample, stored in runs:
            maps = stored.get("tam") or next(iter(stored.values()), None)
            strings = [token_strings(sample)[p] for p in sample.answer_positions.tolist()]
            members = align_word(first_strings, words[index], strings)
            frames = map_frames(sample.vision_blocks)
            cells = None if maps is None or not members else _answer_rows(maps, style.scale)[0][members].max(axis=0)
            for frame, items in zip(frames, frame_media(sample, frames)):
                row.append(
                    (sample, frame, items, None if cells is None else cells[frame.offset : frame.offset + frame.size])
                )
                if len(panels) == 0:
                    titles.append(name + ("" if len(frames) == 1 else f" · {_frame_name(frame, sample)}"))
        panels.append(row)
        labels.append(visible_whitespace("".join(first_strings[i] for i, w in enumerate(words) if w == words[index])))
    return _rows_figure(panels, labels, titles, style, _aspect(first, map_frames(first.vision_blocks)))


def frames_figure(sample: Sample, maps: Maps, tokens: Sequence[Item], style: FigureStyle | None = None) -> Figure:
    """One word across frames: a row per chosen token (its word's max) or span (start, stop) (its
    map by style.span_rule), a column per video slice."""
    style = style or FigureStyle()
    frames = [f for f in map_frames(sample.vision_blocks) if f.kind == "video"] or map_frames(sample.vision_blocks)
    media = frame_media(sample, frames)
    strings = [token_strings(sample)[p] for p in sample.answer_positions.tolist()]
    words = word_index(strings)
    cells = _answer_rows(maps, style.scale)[0]
    panels, labels = [], []
    for index in tokens:
        if isinstance(index, tuple):
            word = _item_row(maps, cells, index, style)
            labels.append(_item_label(sample, index))
        else:
            members = [i for i, w in enumerate(words) if w == words[index]]
            word = cells[members].max(axis=0)
            labels.append(visible_whitespace("".join(strings[i] for i in members)))
        panels.append([(sample, f, items, word[f.offset : f.offset + f.size]) for f, items in zip(frames, media)])
    return _rows_figure(panels, labels, [_frame_name(f, sample) for f in frames], style, _aspect(sample, frames))


def span_figure(sample: Sample, maps: Maps, start: int, stop: int, style: FigureStyle | None = None) -> Figure:
    """Answer tokens start..stop-1 as one map (`Maps.span` by style.span_rule) over every image /
    frame, on its own range, labelled with the phrase."""
    style = style or FigureStyle()
    frames = map_frames(sample.vision_blocks)
    raw = maps.span(start, stop, rule=style.span_rule)
    cells = normalise(raw[None], None, "map")[0][0]
    media = frame_media(sample, frames)
    panels = [[(sample, f, items, cells[f.offset : f.offset + f.size]) for f, items in zip(frames, media)]]
    where = ["" if len(frames) == 1 else f" · {_frame_name(f, sample)}" for f in frames]
    titles = [f"{variant_title(maps.variant, maps.settings)} · {style.span_rule}{w}" for w in where]
    bar = (float(raw.min()), float(raw.max()), "raw, the span's own range")
    return _rows_figure(panels, [_item_label(sample, (start, stop))], titles, style, _aspect(sample, frames), bar)


def save_figure(figure: Figure, path, format: str = "png", dpi: int = 300) -> None:
    """Write a figure as PNG, SVG or PDF (the Agg / SVG / PDF backends, no display needed)."""
    with rc_context({"svg.fonttype": "none", "pdf.fonttype": 42, "font.family": list(font_families())}):
        figure.savefig(path, format=format, dpi=dpi, facecolor="white")
