"""The `tamx` command line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

import tamx
from tamx import ExplainSettings
from tamx.captions import format_captions
from tamx.datasets import DATASETS
from tamx.errors import TamxError
from tamx.filters import FILTERS

from .encode.command import encode
from .eval import evaluate_run, write_results
from .eval.stage import format_class_table, format_table
from .explain import explain_run
from .info import run_summary
from .interchange import export_file, import_files
from .progress import progress
from .render import render_run


class _Group(click.Group):
    """Turns tamx's own errors into a one-line message and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TamxError as exc:
            raise click.ClickException(str(exc)) from None


def _report_failures(failed: dict[str, str], what: str) -> None:
    if failed:
        click.echo(f"{len(failed)} {what} failed:", err=True)
        for name, reason in failed.items():
            click.echo(f"  {name}: {reason}", err=True)
        sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(tamx.__version__, prog_name="tamx")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """tamx: Token Activation Maps, why a vision-language model said each word.

    encode (GPU) -> explain (CPU) -> render / eval, through a run store.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--limit", default=20, show_default=True, help="Samples listed one per line (0: all).")
def info(run: str, as_json: bool, limit: int) -> None:
    """What the run store RUN holds: model, samples, sizes, variants, incomplete writes."""
    summary = run_summary(run)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    model = summary["model"]
    click.echo(f"run      {summary['path']}  (schema {summary['schema_version']}, {summary['bytes'] / 1e6:.1f} MB)")
    revision = f" @ {model['model_revision']}" if model.get("model_revision") else ""
    click.echo(f"model    {model['model_id']}{revision}  ({model['dtype']})")
    roles = ", ".join(f"{k}={v}" for k, v in model["special_tokens"].items()) or "none recorded"
    click.echo(f"special  {roles}")
    samples = summary["samples"]
    click.echo(f"samples  {len(samples)} complete, {len(summary['incomplete'])} incomplete")
    variants = (
        ", ".join(f"{name} ({count})" for name, count in summary["variants"].items()) or "none (run `tamx explain`)"
    )
    click.echo(f"variants {variants}")
    shown = samples if limit <= 0 else samples[:limit]
    if shown:
        click.echo(f"\n{'sample':<24} {'tokens':>7} {'answer':>7} {'vision':>7}  blocks / variants")
        for s in shown:
            click.echo(
                f"{s['id']:<24} {s['tokens']:>7} {s['answer_tokens']:>7} {s['vision_cells']:>7}  "
                f"{'; '.join(s['vision']) or '-'} / {', '.join(s['variants']) or '-'}"
            )
        if len(shown) < len(samples):
            click.echo(f"... and {len(samples) - len(shown)} more (--limit 0 lists all)")
    if summary["incomplete"]:
        click.echo("\nincomplete (interrupted writes; re-run the stage that wrote them to resume):")
        for sample_id in summary["incomplete"]:
            click.echo(f"  {sample_id}")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--variant", help="Name to store the maps under.  [default: from the settings: tam, cam, eci, ...]")
@click.option("--kernel-size", default=3, show_default=True, type=int, help="Odd window size of the filter.")
@click.option("--no-eci", is_flag=True, help="Skip estimated causal inference (Eqs. 2, 4, 5).")
@click.option(
    "--eci-weights",
    type=click.Choice(["relevance", "uniform"]),
    default="relevance",
    show_default=True,
    help="Weights of the context maps: Eq. 4's relevance, or uniform (ECI-mean).",
)
@click.option(
    "--filter",
    "filter_name",
    type=click.Choice(list(FILTERS)),
    default="rank-gaussian",
    show_default=True,
    help="Denoising filter applied per image and per video frame.",
)
@click.option("--samples", help="Comma-separated sample ids.  [default: all]")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Processes over samples.")
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
    filter_name: str,
    samples: str | None,
    workers: int,
    no_candidates: bool,
    no_prompt: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Compute token activation maps for the samples of RUN (no model, no GPU).

    Each setting is stored as a variant beside the others; hidden states are never rewritten.
    """
    settings = ExplainSettings(
        eci="off" if no_eci else eci_weights,
        filter=filter_name,
        kernel_size=kernel_size,
        candidates=not no_candidates,
        prompt=not no_prompt,
    )
    variant = variant or settings.variant_name()
    report = explain_run(
        run,
        settings,
        variant,
        _split(samples),
        workers=workers,
        overwrite=overwrite,
        wrap=lambda results, total: progress(results, f"explain {variant}", total, quiet),
    )
    if not quiet:
        skipped = f", {len(report.skipped)} already stored" if report.skipped else ""
        click.echo(f"variant {variant!r}: {len(report.done)} sample(s) explained{skipped}", err=True)
    _report_failures(report.failed, "sample(s)")


@main.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run store to create or add to.")
@click.option("--overwrite", is_flag=True, help="Replace samples already in the run.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def import_(files: tuple[str, ...], out: str, overwrite: bool, quiet: bool) -> None:
    """Import single-sample safetensors FILES (one sample each) into the run store --out."""
    report = import_files(files, out, overwrite=overwrite)
    if not quiet:
        skipped = f", {len(report.skipped)} already there (--overwrite replaces)" if report.skipped else ""
        click.echo(f"{out}: {len(report.imported)} sample(s) imported{skipped}", err=True)
    _report_failures(report.failed, "file(s)")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--sample", "sample_id", help="Sample id; may be left out when the run holds one sample.")
@click.option("--variant", help="Maps variant to include.  [default: tam, if stored]")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .safetensors file to write.")
def export(run: str, sample_id: str | None, variant: str | None, out: str) -> None:
    """Export one sample of RUN (and its maps) as a single safetensors file."""
    exported = export_file(run, out, sample_id, variant)
    click.echo(f"wrote {out} (sample {exported!r})", err=True)


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for index.html and the pages.")
@click.option("--samples", help="Comma-separated sample ids.  [default: all]")
@click.option("--variants", help="Comma-separated variants to include.  [default: all stored]")
@click.option("--png", is_flag=True, help="Also draw paper-style PNG figures (tam variant, or the first).")
@click.option("--tokens", help="Comma-separated answer-token indices for the figures.  [default: all; grid: first 12]")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def render(
    run: str, out: str, samples: str | None, variants: str | None, png: bool, tokens: str | None, quiet: bool
) -> None:
    """Write one self-contained HTML page per sample of RUN and an index.html to --out.

    Pages carry their data, images, CSS and JS inline: they open from disk, offline, and can
    be shared by e-mail.
    """
    report = render_run(
        run,
        out,
        _split(samples),
        _split(variants),
        wrap=lambda items, total: progress(items, "render", total, quiet),
        png=png,
        tokens=[_int_option("--tokens", t) for t in _split(tokens) or []] or None,
    )
    figures = f", {len(report.figures)} figure(s) in {Path(out) / 'figures'}" if report.figures else ""
    click.echo(f"{len(report.pages)} page(s){figures}; open {report.index}")
    if report.unexplained:
        click.echo(f"{len(report.unexplained)} sample(s) have no maps yet: run `tamx explain {run}` first", err=True)
    _report_failures(report.failed, "sample(s)")


@main.command("eval")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--dataset", required=True, type=click.Choice(DATASETS), help="Layout of --data (docs/eval.md).")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="The dataset folder.")
@click.option("--variants", help="Comma-separated variants to score.  [default: all stored]")
@click.option("--samples", help="Comma-separated sample ids.  [default: all that have a record]")
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
    "--out", type=click.Path(file_okay=False), help="Folder for the CSV and JSON.  [default: RUN/eval/DATASET]"
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_(
    run: str,
    dataset: str,
    data: str,
    variants: str | None,
    samples: str | None,
    tagger: str,
    first_token: bool,
    out: str | None,
    quiet: bool,
) -> None:
    """Score the maps of RUN against the masks of a dataset: Obj-IoU, Func-IoU, F1-IoU, pointing.

    Generated answers are also scored against the reference captions (ROUGE-L, METEOR, CIDEr-D).

    Every stored variant is scored side by side; per-class and per-word breakdowns and every
    scored word go to --out.
    """
    result = evaluate_run(
        run,
        dataset,
        data,
        _split(variants),
        tagger=tagger,
        first_token=first_token,
        sample_ids=_split(samples),
        wrap=lambda items, total: progress(items, f"eval {dataset}", total, quiet),
    )
    click.echo(format_table(result))
    click.echo("\n" + format_class_table(result))
    click.echo("\n" + format_captions(result.captions))
    folder = Path(out) if out else Path(run) / "eval" / dataset
    write_results(result, folder)
    if not quiet:
        skipped = f"; {len(result.not_in_dataset)} sample(s) without a record skipped" if result.not_in_dataset else ""
        click.echo(
            f"wrote {folder}/summary.csv, summary.json, per_class.csv, per_word.csv, per_word_class.csv, entries.csv, "
            f"captions.csv{skipped}",
            err=True,
        )
    _report_failures(result.failed, "sample(s)")


def _int_option(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an integer", param_hint=name) from None


def _split(value: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


# torch and transformers load only when `tamx encode` runs
main.add_command(encode)


@main.command()
@click.option("--out", default="tamx-demo", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--model", default=None, help="A model id or folder instead of the bundled toy model (tamx-demo).")
@click.option("--overwrite", is_flag=True, help="Replace the inputs, run and report of an earlier demo in --out.")
def demo(out: str, model: str | None, overwrite: bool) -> None:
    """Encode, explain and render bundled shapes-world images with a bundled toy VLM (CPU, offline)."""
    from .demo import DEMO_MODEL
    from .demo.run import NOTICE, captions, run_demo

    if model in (None, DEMO_MODEL):
        click.echo(NOTICE, err=True)
    report = run_demo(out, model, overwrite)
    for sample_id, answer in captions(report.run).items():
        click.echo(f"  {sample_id}: {answer}", err=True)
    click.echo(f"done in {report.seconds:.1f} s; open the report:", err=True)
    click.echo(str(report.index))


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the dataset.")
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
