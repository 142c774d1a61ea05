"""The render stage: one self-contained HTML page per sample, an index, and PNG figures."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from tamx import open_run
from tamx.errors import TamxError
from tamx.report import index_entry, page_data

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


def write_text(path: Path, text: str) -> None:
    """Write a file atomically (aside, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def sample_page(data: dict, index_href: str = "../index.html") -> str:
    """The HTML of one sample page from its `page_data`."""
    return _env.get_template("sample.html.j2").render(
        title=data["id"],
        model=data["model"],
        notice=data["notice"],
        variants=list(data["variants"]),
        default_variant=data["default_variant"],
        index_href=index_href,
        data=data,
    )


def render_run(
    run_path: str | os.PathLike,
    out: str | os.PathLike,
    sample_ids: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    wrap=None,
) -> RenderReport:
    """Write out/index.html and out/samples/<id>.html for the samples of a run."""
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
            data = page_data(sample, {name: run.maps(sample_id, name) for name in names}, run.info)
            page = out / "samples" / f"{sample_id}.html"
            write_text(page, sample_page(data))
        except TamxError as exc:
            report.failed[sample_id] = str(exc)
            continue
        seen_variants.update(names)
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
