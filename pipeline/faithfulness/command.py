"""The `tamx faithfulness` command; torch and transformers load only when it runs."""

from __future__ import annotations

import click

from tamx.datasets import DATASETS
from tamx.faithfulness import BASELINES, WORDS

from ..errors import report_failures
from ..locations import Location
from ..options import model_device_options
from ..progress import progress


@click.command()
@click.argument("run", type=Location(url=True, exists=True, file_okay=False))
@click.option(
    "--model", "model_id", required=True, help="The run's model: Hugging Face id, local folder, or tamx-demo."
)
@click.option("--variants", help="Comma-separated maps variants to score.  [default: every stored one]")
@click.option(
    "--words",
    type=click.Choice(WORDS),
    default="content",
    show_default=True,
    help="Explain content words (not function words, not punctuation) or every answer token.",
)
@click.option("--steps", default=10, show_default=True, type=click.IntRange(2, 100), help="Equal fractions.")
@click.option(
    "--baseline",
    type=click.Choice(BASELINES),
    default="blur",
    show_default=True,
    help="What replaces a removed cell's pixels.",
)
@click.option("--random-orders", default=3, show_default=True, type=click.IntRange(1, 100), help="Random control.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random orders and ties.")
@click.option("--dataset", type=click.Choice(DATASETS), help="Mask dataset the run was encoded from (mask control).")
@click.option("--data", type=Location(url=False, exists=True, file_okay=False), help="The folder of --dataset.")
@model_device_options
@click.option(
    "--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Perturbed images per forward pass."
)
@click.option(
    "--threads",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="torch CPU threads (1 measured fastest on a shared 2-core machine: benchmarks/faithfulness_bench.py).",
)
@click.option("--overwrite", is_flag=True, help="Recompute records already stored (default: resume).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def faithfulness(
    run: str,
    model_id: str,
    variants: str | None,
    words: str,
    steps: int,
    baseline: str,
    random_orders: int,
    seed: int,
    dataset: str | None,
    data: str | None,
    device: str,
    dtype: str,
    batch_size: int,
    threads: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Deletion and insertion curves of the stored maps: perturb each image along a map's cell order,
    re-run the model teacher-forced, store the explained token's probability in RUN.

    Controls: random orders and, with --dataset/--data, the ground-truth mask. `tamx eval` reports
    the AUCs. Finished samples are skipped, so re-running resumes; under torchrun every rank takes a shard.
    """
    try:
        import torch

        from ..ranks import rank_and_size
        from .stage import FaithfulnessSettings, faithfulness_run
    except ImportError as exc:
        raise click.ClickException(
            f"tamx faithfulness needs torch, transformers and Pillow ({exc}); install them with "
            "pip install 'tamx[encode]'"
        ) from None
    if bool(dataset) != bool(data):
        raise click.UsageError("--dataset and --data go together")
    torch.set_num_threads(threads)  # every torchrun rank runs this: --threads is per rank
    first = rank_and_size()[0] == 0  # under torchrun rank 0 alone draws the bar and reports the whole job
    chosen = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    settings = FaithfulnessSettings(steps=steps, baseline=baseline, random_orders=random_orders, seed=seed, words=words)
    report = faithfulness_run(
        run,
        model_id,
        variants=chosen,
        settings=settings,
        dataset=dataset,
        data=data,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        overwrite=overwrite,
        wrap=lambda ids, total: (s for s in progress(ids, "faithfulness", total, quiet or not first)),
    )
    if report.rank != 0:
        return  # rank 0 lists every rank's failures and exits with the job's status
    if not quiet:
        skipped = f", {len(report.skipped)} already stored" if report.skipped else ""
        ranks = f" on {report.ranks} ranks" if report.ranks > 1 else ""
        rate = report.forward_images / report.forward_seconds if report.forward_seconds else 0.0
        click.echo(
            f"{run}: {len(report.done)} sample(s) scored in {report.seconds:.1f}s{ranks} "
            f"({report.forward_images} images, {rate:.0f}/s){skipped}",
            err=True,
        )
    report_failures(report.failed)
