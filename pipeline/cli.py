"""The `tamx` command line."""

from __future__ import annotations

import importlib
import json
import logging
import os

import click

import tamx
from tamx import defaults
from tamx.errors import printable

from .errors import ErrorGroup, name_option, report_failures
from .files import joined
from .locations import Location
from .options import model_device_options
from .progress import progress

# Start-up stays fast: every command imports its stage (numba, zarr, jinja2, cv2, torch) when
# it runs; a test checks that importing this module loads none of them.
_LAZY_COMMANDS = {
    "encode": (
        "tamx.pipeline.encode.command",
        "encode",
        "Run a VLM on images/videos and a prompt; store what `tamx explain` needs in the run --out.",
    ),
    "faithfulness": (
        "tamx.pipeline.faithfulness.command",
        "faithfulness",
        "Deletion and insertion curves of the stored maps (re-runs the model on perturbed images).",
    ),
}


class _LazyChoice(click.Choice):
    """A click.Choice whose names come from a module imported when the option is first parsed
    or shown, not when the command line loads."""

    def __init__(self, module: str, name: str) -> None:
        self._source = (module, name)
        self.case_sensitive = True

    @property
    def choices(self):  # type: ignore[override]
        module, name = self._source
        value = getattr(importlib.import_module(module), name)
        return tuple(value() if callable(value) else value)


# Every path option goes through one check (pipeline/locations.py) before any work: a malformed
# URL, or a URL where only a local path will do, is refused in one line instead of becoming a
# local folder named "s3:".
RUN = Location(url=True, exists=True, file_okay=False)  # a run store to read: local folder or URL
OUT_FOLDER = Location(url=True, file_okay=False)  # written through fsspec at a URL
LOCAL_FOLDER = Location(url=False, file_okay=False)


class _Group(ErrorGroup):
    """The one error path (ErrorGroup), and heavy commands (encode) loaded on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str):
        if name in _LAZY_COMMANDS and name not in self.commands:
            module, attr, _ = _LAZY_COMMANDS[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in _LAZY_COMMANDS and name not in self.commands:
                rows.append((name, _LAZY_COMMANDS[name][2]))
            else:
                command = self.get_command(ctx, name)
                if command is not None and not command.hidden:
                    rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(tamx.__version__, prog_name="tamx")
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug, and the traceback of an error).")
def main(verbose: int) -> None:
    """tamx: Token Activation Maps, why a vision-language model said each word.

    encode (GPU) -> explain (CPU) -> render / eval, through a run store.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("run", type=RUN)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--limit", default=20, show_default=True, help="Samples listed one per line (0: all).")
def info(run: str, as_json: bool, limit: int) -> None:
    """What the run store RUN holds: model, samples, sizes, variants, incomplete writes."""
    p = printable  # a shared run's ids, names and messages reach the terminal

    from .info import run_summary

    summary = run_summary(run)
    if as_json:
        # ASCII with every control character escaped (json leaves DEL as it is)
        click.echo(json.dumps(summary, indent=2).replace("\x7f", "\\u007f"))
        return
    model = summary["model"]
    click.echo(f"run      {p(summary['path'])}  (schema {summary['schema_version']}, {summary['bytes'] / 1e6:.1f} MB)")
    revision = f" @ {p(model['model_revision'])}" if model.get("model_revision") else ""
    click.echo(f"model    {p(model['model_id'])}{revision}  ({p(model['dtype'])})")
    roles = ", ".join(f"{p(k)}={p(v)}" for k, v in model["special_tokens"].items()) or "none recorded"
    click.echo(f"special  {roles}")
    samples = summary["samples"]
    damaged = f", {len(summary['damaged'])} damaged" if summary["damaged"] else ""
    click.echo(f"samples  {len(samples)} complete, {len(summary['incomplete'])} incomplete{damaged}")
    variants = (
        ", ".join(f"{p(name)} ({count})" for name, count in summary["variants"].items()) or "none (run `tamx explain`)"
    )
    click.echo(f"variants {variants}")
    added = {}
    for s in samples:
        for group, size in (s.get("baseline_bytes") or {}).items():
            added.setdefault(group, []).append(size)
    if added:  # what `tamx encode --layers / --attention` added, per sample that holds it
        click.echo(
            "baselines "
            + ", ".join(f"{g} {sum(v) / len(v) / 1e3:.1f} kB/sample ({len(v)})" for g, v in sorted(added.items()))
        )
    shown = samples if limit <= 0 else samples[:limit]
    if shown:
        click.echo(f"\n{'sample':<24} {'tokens':>7} {'answer':>7} {'vision':>7}  blocks / variants")
        for s in shown:
            click.echo(
                f"{p(s['id']):<24} {s['tokens']:>7} {s['answer_tokens']:>7} {s['vision_cells']:>7}  "
                f"{p('; '.join(s['vision'])) or '-'} / {p(', '.join(s['variants'])) or '-'}"
            )
        if len(shown) < len(samples):
            click.echo(f"... and {len(samples) - len(shown)} more (--limit 0 lists all)")
    if summary["incomplete"]:
        click.echo("\nincomplete (interrupted writes; re-run the stage that wrote them to resume):")
        for sample_id in summary["incomplete"]:
            click.echo(f"  {p(sample_id)}")
    leftover = {k: v for k, v in summary["garbage"].items() if k not in summary["incomplete"]}
    if leftover:
        click.echo("\nuncommitted objects (a killed writer's; the next write of the sample replaces them):")
        for sample_id, keys in leftover.items():
            click.echo(f"  {p(sample_id)}: {p(', '.join(keys))}")
    if summary["damaged"]:
        click.echo(f"\ndamaged ({len(summary['damaged'])}; re-encode or re-import them):")
        for sample_id, reason in summary["damaged"].items():
            click.echo(f"  {p(sample_id)}: {p(reason)}")
    damaged_maps = [(s, v, reason) for s, found in summary["damaged_maps"].items() for v, reason in found.items()]
    if damaged_maps:
        click.echo(f"\ndamaged maps ({len(damaged_maps)}):")
        for sample_id, variant, reason in damaged_maps:
            click.echo(f"  {p(sample_id)} {p(variant)}: {p(reason)}")


@main.command()
@click.argument("run", type=RUN)
@click.option(
    "--variant",
    callback=name_option("variant name", new=True),
    help="Name to store the maps under.  [default: from the settings: tam, cam, eci, ...]",
)
@click.option(
    "--kernel-size",
    default=defaults.KERNEL_SIZE,
    show_default=True,
    type=int,
    callback=lambda ctx, param, value: _odd_size(value),
    help="Odd window size of the filter.",
)
@click.option("--no-eci", is_flag=True, help="Skip estimated causal inference (Eqs. 2, 4, 5).")
@click.option(
    "--eci-weights",
    type=_LazyChoice("tamx.eci", "weighted_modes"),
    default=defaults.ECI,
    show_default=True,
    help="Weights of the context maps (tamx.eci.ECI_WEIGHTINGS): Eq. 4's relevance, or uniform (ECI-mean).",
)
@click.option(
    "--filter",
    "filter_name",
    type=_LazyChoice("tamx.filters", "FILTERS"),
    help=f"Denoising filter applied per image and per video frame.  [default: {defaults.FILTER}; none for a "
    "method other than tam]",
)
@click.option(
    "--method",
    type=_LazyChoice("tamx.methods", "METHODS"),
    default="tam",
    show_default=True,
    help="Map method (tamx.methods.METHODS): the TAM family, or attention / rollout (`tamx encode --attention`).",
)
@click.option(
    "--layer",
    default=-1,
    show_default=True,
    type=click.IntRange(max=-1),
    help="The layer whose states the TAM family reads, counted from the last (-1); others need `tamx encode --layers`.",
)
@click.option(
    "--samples", callback=name_option("sample id", many=True), help="Comma-separated sample ids.  [default: all]"
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, max(2, os.cpu_count() or 1)),
    help="Worker processes, a sample each (at most the CPUs of this machine).",
)
@click.option("--dask", "dask_address", help="Run the samples on this Dask scheduler (tcp://host:8786) instead.")
@click.option("--no-candidates", is_flag=True, help="Skip the maps of the top-k candidates.")
@click.option("--no-prompt", is_flag=True, help="Skip the maps of the prompt tokens.")
@click.option("--overwrite", is_flag=True, help="Recompute variants that are already stored.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def explain(
    run: str,
    variant: str | None,
    kernel_size: int,
    no_eci: bool,
    eci_weights: str,
    filter_name: str | None,
    method: str,
    layer: int,
    samples: str | None,
    workers: int,
    dask_address: str | None,
    no_candidates: bool,
    no_prompt: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Compute token activation maps for the samples of RUN (no model, no GPU).

    Each setting is stored as a variant beside the others; hidden states are never rewritten.
    """
    from tamx import ExplainSettings
    from tamx.methods import default_filter

    from .explain import explain_run, keep_freed_memory

    keep_freed_memory()
    if method != "tam" and layer != -1:
        raise click.BadParameter(f"--layer applies to the tam method, not {method!r}", param_hint="'--layer'")
    settings = ExplainSettings(
        eci="off" if no_eci else eci_weights,
        filter=filter_name or default_filter(method),
        kernel_size=kernel_size,
        candidates=not no_candidates,
        prompt=not no_prompt,
        method=method,
        layer=layer,
    )
    report = explain_run(
        run,
        settings,
        variant,
        _split(samples),
        workers=workers,
        overwrite=overwrite,
        wrap=lambda results, total: progress(results, "explain", total, quiet),
        dask=dask_address,
        refuse_other_settings=True,
    )
    if not quiet:
        skipped = f", {len(report.skipped)} already stored" if report.skipped else ""
        click.echo(f"variant {report.variant!r}: {len(report.done)} sample(s) explained{skipped}", err=True)
    if report.incomplete:
        shown = printable(", ".join(report.incomplete[:5])) + (" ..." if len(report.incomplete) > 5 else "")
        click.echo(
            f"{len(report.incomplete)} incomplete sample(s) not explained ({shown}): their write was interrupted; "
            "re-run the stage that wrote them",
            err=True,
        )
    report_failures(report.failed, "sample(s)")


@main.command("import")
@click.argument("files", nargs=-1, required=True, type=Location(url=False, exists=True, dir_okay=False))
@click.option("--out", required=True, type=OUT_FOLDER, help="Run store (folder or URL) to create or add to.")
@click.option("--overwrite", is_flag=True, help="Replace samples already in the run.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def import_(files: tuple[str, ...], out: str, overwrite: bool, quiet: bool) -> None:
    """Import single-sample safetensors FILES (one sample each) into the run store --out."""
    from .interchange import import_files

    report = import_files(files, out, overwrite=overwrite)
    if not quiet:
        skipped = f", {len(report.skipped)} already there (--overwrite replaces)" if report.skipped else ""
        click.echo(f"{out}: {len(report.done)} sample(s) imported{skipped}", err=True)
    report_failures(report.failed, "file(s)")


@main.command()
@click.argument("run", type=RUN)
@click.option(
    "--sample",
    "sample_id",
    callback=name_option("sample id"),
    help="Sample id; may be left out when the run holds one sample.",
)
@click.option("--variant", help="Maps variant to include.  [default: tam, if stored]")
@click.option(
    "--out",
    required=True,
    type=Location(url=True, dir_okay=False),
    help="The .safetensors file (path or URL) to write.",
)
def export(run: str, sample_id: str | None, variant: str | None, out: str) -> None:
    """Export one sample of RUN (and its maps) as a single safetensors file."""
    from .interchange import export_file

    exported = export_file(run, out, sample_id, variant)
    click.echo(f"wrote {out} (sample {exported!r})", err=True)


@main.command()
@click.argument("runs", nargs=-1, required=True, type=RUN)
@click.option("--out", required=True, type=OUT_FOLDER, help="Folder (or URL) for index.html and the pages.")
@click.option(
    "--samples",
    callback=name_option("sample id", many=True),
    help="Comma-separated sample ids.  [default: all (with several runs: all they share)]",
)
@click.option("--variants", help="Comma-separated variants to include.  [default: all stored]")
@click.option(
    "--png", is_flag=True, help="Also draw paper figures (matplotlib), as PNG unless --format says otherwise."
)
@click.option("--format", "fmt", type=click.Choice(["png", "svg", "pdf"]), help="Figure format (implies figures).")
@click.option(
    "--layout",
    type=click.Choice(["variants", "runs", "frames"]),
    default="variants",
    show_default=True,
    help="Figure grid: tokens x variants, tokens x runs (several RUNS, aligned by word), or one word across frames.",
)
@click.option(
    "--tokens",
    help="Comma-separated answer-token indices and ranges for the figures: 0,3-5 draws token 0 and tokens 3 to 5 "
    "as one map (a phrase).  [default: all; grid: first 12]",
)
@click.option(
    "--span-rule",
    type=click.Choice(["mean", "weighted"]),
    default="mean",
    show_default=True,
    help="How a range's token maps become one: their mean, or weighted by each map's total activation "
    '(docs/method.md "Spans").',
)
@click.option("--width", type=float, help="Figure width in inches.  [default: 3.5, one column of a two-column paper]")
@click.option("--dpi", type=click.IntRange(50, 1200), default=300, show_default=True, help="Raster resolution.")
@click.option(
    "--colormap",
    type=click.Choice(["jet", "turbo", "inferno"]),
    default="jet",
    show_default=True,
    help="Colour map of the figures.",
)
@click.option(
    "--scale",
    type=click.Choice(["map", "joint"]),
    default="map",
    show_default=True,
    help="Colours of figures and the pages' first view: each map on its own range (map), or together with "
    "its text relevance (joint, Eq. 3).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def render(
    runs: tuple[str, ...],
    out: str,
    samples: str | None,
    variants: str | None,
    png: bool,
    fmt: str | None,
    layout: str,
    tokens: str | None,
    width: float | None,
    dpi: int,
    colormap: str,
    scale: str,
    span_rule: str,
    quiet: bool,
) -> None:
    """Write one self-contained HTML page per sample of RUNS and an index.html to --out.

    Pages carry their data, images, CSS and JS inline: they open from disk, offline, and can
    be shared by e-mail. With two or more RUNS (different models on the same inputs), samples
    are paired by id and each page shows every model's answer and maps side by side.
    """
    from tamx.spans import parse_tokens

    from .render import FigureOptions, render_run

    try:
        chosen = parse_tokens(tokens or "") or None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tokens") from None
    options = None
    if png or fmt:
        from tamx.figures import FigureStyle  # only when figures are drawn: matplotlib is slow to import

        style = FigureStyle(width=width, dpi=dpi, colormap=colormap, scale=scale, span_rule=span_rule)
        options = FigureOptions(format=fmt or "png", layout=layout, tokens=chosen, style=style)
    report = render_run(
        list(runs),
        out,
        _split(samples),
        _split(variants),
        wrap=lambda items, total: progress(items, "render", total, quiet),
        figure_options=options,
        scale=scale,
    )
    figures = f", {len(report.figures)} figure(s) in {joined(out, 'figures')}" if report.figures else ""
    click.echo(f"{len(report.pages)} page(s){figures}; open {report.index}")
    for name, missing in report.unpaired.items():
        left_out = printable(", ".join(missing[:5]))
        click.echo(f"{printable(name)}: {len(missing)} sample(s) not in every run, left out: {left_out}", err=True)
    if report.unexplained:
        click.echo(f"{len(report.unexplained)} sample(s) have no maps yet: run `tamx explain` first", err=True)
    report_failures(report.failed, "sample(s)")


def _threshold_option(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    """--threshold: None for Otsu, else the float in (0, 1); anything else is a usage error."""
    from tamx.errors import TamxError
    from tamx.metrics import parse_threshold

    try:
        return parse_threshold(value)
    except TamxError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command("eval")
@click.argument("run", type=RUN)
@click.option(
    "--dataset", required=True, type=_LazyChoice("tamx.datasets", "DATASETS"), help="Layout of --data (docs/eval.md)."
)
@click.option(
    "--data", required=True, type=Location(url=False, exists=True, file_okay=False), help="The dataset folder."
)
@click.option("--variants", help="Comma-separated variants to score.  [default: all stored]")
@click.option(
    "--samples",
    callback=name_option("sample id", many=True),
    help="Comma-separated sample ids.  [default: all that have a record]",
)
@click.option(
    "--tagger",
    type=click.Choice(["rules", "nltk"]),
    default="rules",
    show_default=True,
    help="Word classes: offline rules, or NLTK's pos_tag as in the paper (needs its tagger data).",
)
@click.option(
    "--first-token/--no-first-token",
    default=True,
    show_default=True,
    help="Replace the first answer token's map by the first prompt token's map without ECI (Supp. E).",
)
@click.option(
    "--protocol",
    type=click.Choice(["tamx", "paper"]),
    default="tamx",
    show_default=True,
    help="tamx's evaluation, or the authors' (docs/eval.md \"Protocols\" lists every difference).",
)
@click.option(
    "--threshold",
    default="otsu",
    show_default=True,
    callback=_threshold_option,
    help="Binarisation: Otsu's, or a fixed FLOAT in (0, 1) on the normalised map scale (0.5: half the maximum).",
)
@click.option("--out", type=OUT_FOLDER, help="Folder (or URL) for the CSV and JSON.  [default: RUN/eval/DATASET]")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_(
    run: str,
    dataset: str,
    data: str,
    variants: str | None,
    samples: str | None,
    tagger: str,
    first_token: bool,
    protocol: str,
    threshold: float | None,
    out: str | None,
    quiet: bool,
) -> None:
    """Score the maps of RUN against the masks of a dataset: Obj-IoU, Func-IoU, F1-IoU, pointing.

    Generated answers are also scored against the reference captions (ROUGE-L, METEOR, CIDEr-D).

    Every stored variant is scored side by side; per-class and per-word breakdowns and every
    scored word go to --out.
    """
    from tamx.captions import format_captions

    from .eval import evaluate_run, write_results
    from .eval.stage import format_class_table, format_table

    result = evaluate_run(
        run,
        dataset,
        data,
        _split(variants),
        tagger=tagger,
        first_token=first_token,
        sample_ids=_split(samples),
        wrap=lambda items, total: progress(items, f"eval {dataset}", total, quiet),
        protocol=protocol,
        threshold=threshold,
    )
    click.echo(_printable_lines(format_table(result)))
    click.echo("\n" + _printable_lines(format_class_table(result)))
    from .eval.faithfulness import format_faithfulness

    click.echo("\n" + _printable_lines(format_faithfulness(result.faithfulness)))
    click.echo("\n" + _printable_lines(format_captions(result.captions)))
    folder = out or joined(run, "eval", dataset)
    write_results(result, folder)
    if not quiet:
        skipped = f"; {len(result.not_in_dataset)} sample(s) without a record skipped" if result.not_in_dataset else ""
        click.echo(
            f"wrote {folder}/summary.csv, summary.json, per_class.csv, per_word.csv, per_word_class.csv, entries.csv, "
            f"captions.csv, faithfulness.csv{skipped}",
            err=True,
        )
    report_failures(result.failed, "sample(s)")


@main.command()
@click.argument("run", type=Location(url=False, exists=True, file_okay=False))
@click.option("--quiet", is_flag=True, help="No progress bar.")
def upgrade(run: str, quiet: bool) -> None:
    """Convert the schema-1 run RUN to the current store schema, in place.

    A schema-1 sample is deleted only once its schema-2 copy reads back equal; what cannot be
    converted is kept in RUN/schema-1 and listed (status 1). An interrupted upgrade is resumed
    by running it again.
    """
    from tamx.upgrade import upgrade_run

    report = upgrade_run(run, wrap=lambda items, total: progress(items, "upgrade", total, quiet))
    click.echo(f"{run}: {len(report.converted)} sample(s) converted, {len(report.samples)} at store schema 2", err=True)
    report_failures(report.kept, "schema-1 item(s)")


def _model_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--model checked before anything loads (pipeline/encode/hub.py: one hub request at most)."""
    from .encode.hub import model_option

    return model_option(ctx, param, value)


def _odd_size(value: int) -> int:
    """A filter window: odd and at least 1 (a bad option, status 2, before any work)."""
    if value < 1 or value % 2 == 0:
        raise click.BadParameter(f"kernel size must be odd and >= 1 (1, 3, 5, ...), got {value}")
    return value


def _printable_lines(text: str) -> str:
    """A table of several lines, each made printable (its variant names, classes and words come from files)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _split(value: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


@main.command()
@click.option("--out", default="tamx-demo", show_default=True, type=LOCAL_FOLDER, help="Output folder.")
@click.option(
    "--model",
    default=None,
    callback=lambda *args: _model_option(*args),
    help="A model id or folder instead of the bundled toy model (tamx-demo).",
)
@click.option("--overwrite", is_flag=True, help="Replace the inputs, run and report of an earlier demo in --out.")
def demo(out: str, model: str | None, overwrite: bool) -> None:
    """Encode, explain and render bundled shapes-world images with a bundled toy VLM (CPU, offline)."""
    from .demo import DEMO_MODEL
    from .demo.run import NOTICE, captions, check_out, run_demo

    check_out(out, overwrite)  # an earlier demo refuses at once, before the notice and the model
    if model in (None, DEMO_MODEL):
        click.echo(NOTICE, err=True)
    report = run_demo(out, model, overwrite)
    for sample_id, answer in captions(report.run).items():
        click.echo(f"  {printable(sample_id)}: {printable(answer)}", err=True)
    click.echo(f"done in {report.seconds:.1f} s; open the report:", err=True)
    click.echo(str(report.index))


@main.command()
@click.argument("runs", nargs=-1, type=Location(url=False, exists=True, file_okay=False))
@click.option(
    "--model",
    callback=lambda *args: _model_option(*args),
    help="HF id or local folder of a VLM to generate with (needs the [encode] extra).",
)
@click.option("--out", type=LOCAL_FOLDER, help="Run that generated samples go to.  [default: tamx-serve/run]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; not loopback: token.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--token", help="Access token required on every request.  [default: random, unless on loopback]")
@model_device_options
@click.option(
    "--max-new-tokens",
    default=defaults.MAX_NEW_TOKENS,
    show_default=True,
    type=click.IntRange(1),
    help="Model mode: longest answer.",
)
@click.option("--max-upload-mb", default=64, show_default=True, type=click.IntRange(1), help="Largest upload.")
@click.option(
    "--cache", default=128, show_default=True, type=click.IntRange(0), help="Recomputed variants kept in memory."
)
def serve(
    runs: tuple[str, ...],
    model: str | None,
    out: str | None,
    host: str,
    port: int,
    token: str | None,
    device: str,
    dtype: str,
    max_new_tokens: int,
    max_upload_mb: int,
    cache: int,
) -> None:
    """A live local web app over the run stores RUNS (and, with --model, a VLM to generate with).

    Browse samples, change the ECI mode, filter and kernel size and see the maps recomputed;
    save a setting as a variant; compare side by side; download figures. With --model, upload
    images or a video with a prompt and see the new sample's maps. Stop with Ctrl-C.
    """
    try:
        from .serve.app import LOOPBACK, ServeConfig, new_token, run_names, serve_forever
    except ImportError as exc:
        raise click.ClickException(f"tamx serve needs the [serve] extra: pip install 'tamx[serve]' ({exc})") from None
    if not runs and model is None:
        raise click.UsageError("give one or more RUN folders, or --model ID_OR_PATH (or both)")
    if out is not None and model is None:
        raise click.UsageError("--out is where generated samples go: it needs --model ID_OR_PATH")
    loopback = host in LOOPBACK
    config = ServeConfig(
        run_names(list(runs)),
        token=token or (None if loopback else new_token()),
        allowed_hosts=LOOPBACK if loopback else (),
        max_upload_bytes=max_upload_mb << 20,
        cache_size=cache,
    )
    if model is not None:
        from .serve.model import Generator

        try:
            from .encode import EncodeSettings
        except ImportError as exc:
            needs = "--model needs the [encode] extra: pip install 'tamx[encode]'"
            raise click.ClickException(f"{needs} ({exc})") from None
        click.echo(f"loading {model} ...", err=True)
        config.generator = Generator.load(
            model, out or "tamx-serve/run", device=device, dtype=dtype, settings=EncodeSettings(max_new_tokens)
        )
    serve_forever(config, host, port, echo=lambda line: click.echo(line, err=True))


@main.command()
@click.option("--out", required=True, type=LOCAL_FOLDER, help="Folder for the dataset.")
@click.option("--scenes", default=500, show_default=True, type=click.IntRange(1), help="Number of scenes.")
@click.option("--seed", default=1000, show_default=True, type=int, help="Scene seed (training draws other streams).")
@click.option("--overwrite", is_flag=True, help="Replace a dataset already in --out.")
def shapes(out: str, scenes: int, seed: int, overwrite: bool) -> None:
    """Write shapes-world scenes as a folder dataset with masks and manifests, for the demo model's benchmark.

    Then: tamx encode --model tamx-demo --manifest OUT/manifest-true.jsonl --out RUN (or manifest.jsonl
    to let the model caption), tamx explain RUN, tamx eval RUN --dataset folder --data OUT.
    """
    from .demo.dataset import write_shapes_dataset

    written = write_shapes_dataset(out, scenes, seed, overwrite)
    click.echo(f"{written.folder}: {written.scenes} scene(s) with masks (folder dataset)", err=True)
    click.echo(f"  {written.manifest_true}: the true captions as answers (localization: every word scored)", err=True)
    click.echo(f"  {written.manifest}: the model captions (caption metrics)", err=True)
