"""Click options that several commands share, declared once so their names, choices, defaults
and help read the same everywhere (and no torch is imported to show them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

# The names pipeline/encode/loading.py resolves: DTYPES and "auto".
DTYPE_CHOICES = ("auto", "bf16", "fp16", "fp32")


def model_device_options(command: F) -> F:
    """--device and --dtype, where and in which precision a command runs its VLM
    (`tamx encode`, `tamx faithfulness`, `tamx serve --model`)."""
    command = click.option(
        "--dtype",
        type=click.Choice(DTYPE_CHOICES),
        default="auto",
        show_default=True,
        help="The model's dtype. auto: bf16 on a GPU that has it (else fp16), fp32 on the CPU. bf16 is faster "
        "on a CPU with bf16 matrix units (AMX, AVX512-BF16): 1.3-2.2x fp32's images per second for tamx "
        "faithfulness of the toy model at batch 8-16 (docs/faithfulness.md).",
    )(command)
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        help="Where the model runs: cpu, cuda, cuda:1, mps; auto: cuda (under torchrun, the rank's GPU), else mps, "
        "else cpu.",
    )(command)
