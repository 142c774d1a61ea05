"""The render stage: one self-contained HTML page per sample, an index, and PNG figures."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import jinja2
import numpy as np

from tamx import open_run
from tamx.errors import TamxError
from tamx.figures import grid_figure, token_figure
from tamx.records import Maps, Sample
from tamx.report import index_entry, page_data

from .files import atomic_path, write_text

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("vis_templates", ""),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass
class RenderReport:
    """Pages written (sample id -> path), the index, and failures (sample id -> reason)."""

    pages: dict[str, Path] = field(default_factory=dict)
    index: Path | None = None
    figures: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unexplained: list[str] = field(default_factory=list)


# Everything inline, nothing fetched: the page opens from disk and makes no request.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def sample_page(
    data: dict,
    index_href: str = "../index.html",
    csp: str = REPORT_CSP,
    scripts: Sequence[str] = (),
    styles: Sequence[str] = (),
) -> str:
    """The HTML of one sample page from its `page_data`; `tamx serve` adds its own script and
    style sheet (same-origin URLs) and a CSP that lets them talk to the server."""
    return _env.get_template("sample.html.j2").render(
        csp=csp,
        scripts=scripts,
        styles=styles,
        title=data["id"],
        model=data["model"],
        notice=data["notice"],
        variants=list(data["variants"]),
        default_variant=data["default_variant"],
        index_href=index_href,
        data=data,
    )


GRID_TOKENS = 12


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a PNG atomically."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise TamxError(f"could not encode {path}")
    with atomic_path(path) as partial:
        partial.write_bytes(encoded.tobytes())


def write_figures(sample: Sample, maps: Maps, folder: Path, tokens: Sequence[int] | None) -> list[Path]:
    """Per-token figures (the chosen answer tokens, default all) and a grid of them (at most 12 by default)."""
    n = len(sample.answer_positions)
    bad = [i for i in tokens or [] if not 0 <= i < n]
    if bad:
        raise TamxError(f"sample {sample.id!r} has answer tokens 0..{n - 1}; --tokens asked for {bad}")
    chosen = list(tokens) if tokens else list(range(n))
    written = []
    for index in chosen:
        path = folder / f"token_{index:03d}.png"
        write_png(path, token_figure(sample, maps, index))
        written.append(path)
    grid = folder / "grid.png"
    write_png(grid, grid_figure(sample, maps, chosen if tokens else chosen[:GRID_TOKENS]))
    return [*written, grid]


def render_run(
    run_path: str | os.PathLike,
    out: str | os.PathLike,
    sample_ids: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    wrap=None,
    png: bool = False,
    tokens: Sequence[int] | None = None,
) -> RenderReport:
    """Write out/index.html and out/samples/<id>.html for the samples of a run, and with
    `png` the figures out/figures/<id>/token_NNN.png and grid.png of its default variant."""
    run = open_run(run_path)
    out = Path(out)
    sample_ids = list(sample_ids) if sample_ids is not None else run.sample_ids()
    report = RenderReport()
    entries = []
    seen_variants: set[str] = set()
    items: Iterable[str] = wrap(sample_ids, len(sample_ids)) if wrap else sample_ids
    for sample_id in items:
        try:
            sample = run.sample(sample_id)
            names = [v for v in run.variants(sample_id) if variants is None or v in variants]
            stored = {name: run.maps(sample_id, name) for name in names}
            data = page_data(sample, stored, run.info)
            page = out / "samples" / f"{sample_id}.html"
            write_text(page, sample_page(data))
            if png and data["default_variant"] is not None:
                figures = out / "figures" / sample_id
                report.figures += write_figures(sample, stored[data["default_variant"]], figures, tokens)
        except TamxError as exc:
            report.failed[sample_id] = str(exc)
            continue
        seen_variants.update(names)
        if not names:
            report.unexplained.append(sample_id)
        report.pages[sample_id] = page
        entries.append(index_entry(sample, f"samples/{sample_id}.html"))
    report.index = out / "index.html"
    write_text(
        report.index,
        _env.get_template("index.html.j2").render(
            title=f"tamx report · {run.path.name}",
            model=run.info.model_id,
            notice=run.info.extra.get("notice"),
            entries=entries,
            variants=sorted(seen_variants),
        ),
    )
    return report
