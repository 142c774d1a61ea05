"""The `tamx encode` command; torch and transformers load only when it runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from tamx import defaults
from tamx.datasets import DATASETS

from ..errors import name_option, report_failures
from ..locations import Location
from ..manifests import write_manifest
from ..options import model_device_options
from ..progress import progress
from .hub import check_model_option

MAX_TOP_K = 50  # every candidate costs a map per answer token in explain and a stored LM-head row


def _layer_list(value: str, option: str) -> tuple[int, ...]:
    """Comma-separated layer indices ("all": every layer, as ())."""
    if value.strip() == "all":
        return ()
    try:
        layers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of layers such as -1,-8", param_hint=option
        ) from None
    if not layers:
        raise click.BadParameter("give at least one layer, such as -1", param_hint=option)
    return layers


@click.command()
@click.option(
    "--model",
    "model_id",
    required=True,
    help="Hugging Face id, local model folder, or tamx-demo (the bundled toy).",
)
@click.option("--image", "images", multiple=True, type=click.Path(), help="Image file (repeatable).")
@click.option("--video", type=click.Path(), help="Video file.")
@click.option("--prompt", help="Prompt text (inline input).")
@click.option("--answer", help="Explain this answer by teacher forcing instead of generating one.")
@click.option(
    "--id",
    "sample_id",
    callback=name_option("sample id", new=True),
    help="Sample id of the inline input.  [default: the first --image's or the --video's file name without "
    "its extension, made a valid id (photo 1.jpg: photo-1)]",
)
@click.option(
    "--manifest", type=Location(url=False, dir_okay=False), help="JSONL file: one {id, messages, answer?} a line."
)
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    help="Encode a mask dataset for `tamx eval` with the paper's prompt (writes OUT.DATASET.jsonl).",
)
@click.option("--data", type=Location(url=False, exists=True, file_okay=False), help="The folder of --dataset.")
@click.option(
    "--max-new-tokens",
    default=defaults.MAX_NEW_TOKENS,
    show_default=True,
    type=click.IntRange(1),
    help="Answer length limit.",
)
@click.option(
    "--top-k",
    default=defaults.TOP_K,
    show_default=True,
    type=click.IntRange(0, MAX_TOP_K),
    help=f"Candidates kept per step (at most {MAX_TOP_K}: explain draws a map for each).",
)
@click.option(
    "--frames",
    default=defaults.VIDEO_FRAMES,
    show_default=True,
    type=click.IntRange(1),
    help="Frames sampled per video.",
)
@model_device_options
@click.option(
    "--batch-size",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Samples per generate call (left-padded).",
)
@click.option("--include-system", is_flag=True, help="Count the system prompt as context.")
@click.option(
    "--layers",
    default="-1",
    show_default=True,
    callback=lambda ctx, param, value: _layer_list(value, "--layers"),
    help="Decoder layers whose final-norm-applied states to store (the logit lens: `tamx explain --layer L`), "
    "comma-separated, counted from the last (-1).",
)
@click.option(
    "--attention",
    default=None,
    metavar="LAYERS",
    callback=lambda ctx, param, value: None if value is None else _layer_list(value, "--attention"),
    help="Also store the head-mean attention to the vision cells of these layers ('all', or -1,-8) and attention "
    "rollout over every layer (`tamx explain --method attention|rollout`); one more forward pass per sample.",
)
@click.option(
    "--gradients",
    type=int,
    default=None,
    metavar="LAYER",
    help="Also store Grad-CAM at this layer (-1 the last; `tamx explain --method gradient`); one more forward "
    "and backward pass per sample.",
)
@click.option(
    "--out",
    required=True,
    type=Location(url=True, file_okay=False),
    help="Run store (folder or URL) to create or resume.",
)
@click.option("--overwrite", is_flag=True, help="Re-encode samples already stored (default: resume).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def encode(
    model_id: str,
    images: tuple[str, ...],
    video: str | None,
    prompt: str | None,
    answer: str | None,
    sample_id: str | None,
    manifest: str | None,
    dataset: str | None,
    data: str | None,
    max_new_tokens: int,
    top_k: int,
    frames: int,
    device: str,
    dtype: str,
    batch_size: int,
    include_system: bool,
    layers: tuple[int, ...],
    attention: tuple[int, ...] | None,
    gradients: int | None,
    out: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Run a VLM on images/videos and a prompt; store what `tamx explain` needs in the run --out.

    Inline: --image (repeatable) / --video, --prompt, optional --answer. Or --manifest FILE.
    Finished samples are skipped, so re-running resumes; under torchrun every rank takes a shard.
    """
    from .inputs import inline_input, read_manifest  # no torch yet: the inputs and --model are checked first

    if bool(dataset) != bool(data):
        raise click.UsageError("--dataset and --data go together")
    if sum(map(bool, (manifest, dataset, images or video or prompt or answer))) > 1:
        raise click.UsageError(
            "give one of --manifest, --dataset with --data, or inline inputs (--image/--video/--prompt)"
        )
    if dataset:
        from tamx.store import is_url

        if is_url(out):  # beside a run at a URL there is no local folder: a temporary one, for this command
            aside = click.get_current_context().with_resource(tempfile.TemporaryDirectory(prefix="tamx-"))
            manifest = str(Path(aside) / f"{out.rstrip('/').rsplit('/', 1)[-1]}.{dataset}.jsonl")
        else:
            manifest = f"{Path(out).resolve()}.{dataset}.jsonl"
        count = write_manifest(dataset, data, manifest)
        if not quiet:
            click.echo(f"{manifest}: {count} {dataset} record(s) with the paper's prompt", err=True)
    if not manifest and prompt is None:
        raise click.UsageError("give --manifest FILE, --dataset NAME --data DIR, or --prompt with --image / --video")
    inputs = manifest or inline_input(images, video, prompt or "", answer, sample_id)
    try:  # a missing install is said first: no model check can help without it
        from .record import EncodeSettings
        from .stage import encode_path
    except ImportError as exc:
        raise click.ClickException(
            f"tamx encode needs torch, transformers and Pillow ({exc}); install them with "
            "pip install 'tamx[encode]' (torch first, for the build your machine needs)"
        ) from None
    if not manifest or read_manifest(manifest)[0]:  # a manifest of failed lines only needs no model
        check_model_option(model_id)
    settings = EncodeSettings(
        max_new_tokens=max_new_tokens,
        top_k=top_k,
        num_frames=frames,
        include_system=include_system,
        layers=layers,
        attention=attention,
        gradients=gradients,
    )
    report = encode_path(
        model_id,
        inputs,
        out,
        device=device,
        dtype=dtype,
        settings=settings,
        overwrite=overwrite,
        batch_size=batch_size,
        wrap=lambda samples, total: (s for s in progress(samples, "encode", total, quiet)),
    )
    if not quiet:
        skipped = f", {len(report.skipped)} already stored" if report.skipped else ""
        click.echo(f"{out}: {len(report.done)} sample(s) encoded in {report.seconds:.1f}s{skipped}", err=True)
    report_failures(report.failed)
