"""The render stage: one self-contained HTML page per sample, an index, and paper figures."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tamx import open_run
from tamx.errors import DiskFullError, TamxError
from tamx.faithfulness import stored_records
from tamx.records import Maps, Sample
from tamx.report import (
    DEFAULT_SCALE,
    SCALES,
    comparison_data,
    display_name,
    eval_scores,
    index_entry,
    json_ready,
    page_data,
    run_answer,
    sample_page,
    template,
)
from tamx.spans import span_members, token_label
from tamx.store import Run

from .files import atomic_path, joined, write_text
from .outcomes import Outcome, StageReport

if TYPE_CHECKING:
    from tamx.figures import FigureStyle  # matplotlib is slow to import: only when figures are drawn

GRID_TOKENS = 12

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class RenderReport(StageReport):
    """Sample ids whose page was written (done) or failed (sample id -> reason), the pages
    (sample id -> path), the index, the figures, the samples without maps and, over several
    runs, each run's samples the others lack."""

    pages: dict[str, Path | str] = field(default_factory=dict)
    index: Path | str | None = None
    figures: list[Path | str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    unpaired: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class FigureOptions:
    """Which figures `tamx render --png/--format` draws; how they look is `style` (its
    `tamx.figures.FigureStyle`, default when None)."""

    format: str = "png"
    layout: str = "variants"
    tokens: Sequence[int | tuple[int, int]] | None = None  # tokens and spans (start, stop)
    style: FigureStyle | None = None


def _run_names(runs: Sequence[Run]) -> list[str]:
    """A short, unique label per run: its folder's name (with its parent's where two clash)."""
    names = [run.path.name for run in runs]
    if len(set(names)) < len(names):
        names = [f"{run.path.parent.name}/{run.path.name}" for run in runs]
    if len(set(names)) < len(names):
        names = [f"{name} ({k + 1})" for k, name in enumerate(names)]
    return names


def _load(run: Run, sample_id: str, variants: Sequence[str] | None) -> tuple[Sample, dict[str, Maps]]:
    """The sample and its variants, with the maps an earlier explain deferred computed now."""
    sample = run.sample(sample_id)
    names = [v for v in run.variants(sample_id) if variants is None or v in variants]
    stored = {name: run.maps(sample_id, name) for name in names}
    if any(maps.deferred for maps in stored.values()):  # a run explained before explain stored them
        from tamx.explain import complete_maps

        stored = {name: complete_maps(sample, maps) for name, maps in stored.items()}
    return sample, stored


def write_figures(
    loaded: Sequence[tuple[str, Sample, dict[str, Maps]]], folder: Path | str, options: FigureOptions
) -> list[Path | str]:
    """Per-token figures of the first run and one layout figure, in options.format."""
    from tamx import figures

    _, sample, stored = loaded[0]
    n = len(sample.answer_positions)
    bad = [item for item in options.tokens or [] if not all(0 <= i < n for i in span_members([item]))]
    if bad:
        asked = ", ".join(f"{i[0]}-{i[1] - 1}" if isinstance(i, tuple) else str(i) for i in bad)
        raise TamxError(f"sample {sample.id!r} has answer tokens 0..{n - 1}; --tokens asked for [{asked}]")
    if options.layout == "runs" and len(loaded) < 2:
        raise TamxError("--layout runs compares runs: give two or more, as in `tamx render RUN_A RUN_B --out DIR`")
    if options.layout == "runs" and any(isinstance(item, tuple) for item in options.tokens or []):
        raise TamxError(
            "--layout runs aligns single words across runs: give --tokens without ranges, or another layout"
        )
    if not stored:
        return []
    chosen = list(options.tokens) if options.tokens else list(range(n))
    style = options.style or figures.FigureStyle()
    default = "tam" if "tam" in stored else next(iter(stored))
    written = []
    for item in chosen:
        if isinstance(item, tuple):
            path = joined(folder, f"span_{token_label(item)}.{options.format}")
            figure = figures.span_figure(sample, stored[default], *item, style)
        else:
            path = joined(folder, f"token_{token_label(item)}.{options.format}")
            figure = figures.token_figure(sample, stored[default], item, style)
        _save(figure, path, options.format, style.dpi)
        written.append(path)
    grid = chosen if options.tokens else chosen[:GRID_TOKENS]
    if options.layout == "runs":
        figure = figures.runs_figure([(name, s, m) for name, s, m in loaded], grid, style)
    elif options.layout == "frames":
        figure = figures.frames_figure(sample, stored[default], grid, style)
    else:
        figure = figures.variants_figure(sample, stored, grid, style)
    path = joined(folder, f"{options.layout}.{options.format}")
    _save(figure, path, options.format, style.dpi)
    return [*written, path]


def _save(figure, path: Path | str, fmt: str, dpi: int) -> None:
    from tamx.figures import save_figure

    with atomic_path(path) as partial:
        save_figure(figure, partial, fmt, dpi)


def _default_maps(stored: dict[str, Maps]) -> Maps | None:
    """The variant an index thumbnail shows: tam if stored, else the first."""
    return stored.get("tam") or next(iter(stored.values()), None)


def _check_variants(runs: Sequence[Run], sample_ids: Sequence[str], variants: Sequence[str]) -> None:
    """Refuse, before any page, a --variants name that none of the samples has (a typo)."""
    stored: set[str] = set()
    for run in runs:
        for sample_id in sample_ids:
            try:
                stored.update(run.variants(sample_id) if sample_id in run else ())
            except TamxError:
                continue  # a damaged sample fails on its own, beside the others
    unknown = [v for v in variants if v not in stored]
    if unknown:
        raise TamxError(
            f"no sample has the variant(s) {', '.join(map(repr, unknown))} (stored: "
            f"{', '.join(sorted(stored)) or 'none; run `tamx explain` first'}); check --variants"
        )


def render_run(
    run_path: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    sample_ids: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    wrap=None,
    png: bool = False,
    tokens: Sequence[int] | None = None,
    figure_options: FigureOptions | None = None,
    scale: str = DEFAULT_SCALE,
) -> RenderReport:
    """Write out/index.html and out/samples/<id>.html for the samples of a run, and with `png`
    (or `figure_options`) the figures out/figures/<id>/token_NNN.<fmt> and <layout>.<fmt>.

    Several runs (different models on the same inputs): one page per sample id they share,
    their answers and maps side by side, aligned by word. scale: the colour scale the pages open
    with ("map": each map on its own range; "joint": with its text relevance, Eq. 3)."""
    if scale not in SCALES:
        raise TamxError(f"unknown scale {scale!r}: use one of {', '.join(SCALES)}")
    paths = [run_path] if isinstance(run_path, (str, os.PathLike)) else list(run_path)
    if not paths:
        raise TamxError("render needs at least one run")
    runs = [open_run(p) for p in paths]
    names = _run_names(runs)
    options = figure_options or (FigureOptions(tokens=tokens) if png else None)
    report = RenderReport()
    if sample_ids is not None:
        sample_ids = list(sample_ids)
    else:
        shared = set.intersection(*(set(run.sample_ids()) for run in runs))
        sample_ids = [s for s in runs[0].sample_ids() if s in shared]
        for name, run in zip(names, runs):
            missing = sorted(set(run.sample_ids()) - shared)
            if missing and len(runs) > 1:
                report.unpaired[name] = missing
    if variants is not None:
        _check_variants(runs, sample_ids, variants)
    scores = eval_scores(runs[0].path) if len(runs) == 1 else {}
    entries = []
    seen_variants: set[str] = set()
    items: Iterable[str] = wrap(sample_ids, len(sample_ids)) if wrap else sample_ids
    for sample_id in items:
        try:
            loaded = [(name, *_load(run, sample_id, variants)) for name, run in zip(names, runs)]
            pages = [
                page_data(
                    sample,
                    stored,
                    run.info,
                    run_name=name if len(runs) > 1 else None,
                    scale=scale,
                    faithfulness=stored_records(run, sample_id, list(stored)),
                )
                for (name, sample, stored), run in zip(loaded, runs)
            ]
            data = pages[0] if len(pages) == 1 else comparison_data(pages)
            page = joined(out, "samples", f"{sample_id}.html")
            write_text(page, sample_page(data))
            if options is not None:
                report.figures += write_figures(loaded, joined(out, "figures", sample_id), options)
        except DiskFullError:
            raise  # every later page would fail the same way: stop here
        except TamxError as exc:
            report.add(Outcome.failed(sample_id, str(exc)))
            continue
        except (OSError, MemoryError):
            raise  # what the system refuses (a read-only --out, no memory) stops render, as before
        except Exception as exc:  # reported as the sample's failure; -vv logs its traceback
            # a stored value the page cannot show (a malformed field the store's checks let by):
            # this sample fails alone, the others and the index are still written
            log.debug("rendering sample %r failed", sample_id, exc_info=True)
            report.add(
                Outcome.failed(
                    sample_id,
                    f"cannot draw its page ({type(exc).__name__}: {exc}); re-encode or re-import it, "
                    "or report it as a bug with the output of `tamx -vv render`",
                )
            )
            continue
        report.add(Outcome.done(sample_id))
        _, sample, stored = loaded[0]
        seen_variants.update(stored)
        if not stored:
            report.unexplained.append(sample_id)
        report.pages[sample_id] = page
        href = f"samples/{sample_id}.html"
        if len(runs) == 1:
            entries.append(index_entry(sample, href, _default_maps(stored), scores.get(sample_id)))
        else:  # the inputs are the same: one row, each run's answer and map in it
            answers = [run_answer(name, each, _default_maps(maps)) for name, each, maps in loaded]
            entries.append(index_entry(sample, href, runs=answers))
    report.index = joined(out, "index.html")
    score_columns = sorted({key for entry in entries for key in entry["scores"]})
    write_text(
        report.index,
        template("index.html.j2").render(
            **json_ready(
                {
                    "title": "tamx report · " + " vs ".join(names),
                    "models": [display_name(run.info.model_id) for run in runs],
                    "notice": runs[0].info.extra.get("notice"),
                    "entries": entries,
                    "variants": sorted(seen_variants),
                    "score_columns": score_columns,
                }
            )
        ),
    )
    return report
