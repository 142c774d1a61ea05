"""Settings bounded before any work: a kernel wider than every vision grid of the selected samples
(unless no filter runs), explain's --kernel-size and --workers, and render's --tokens."""

from __future__ import annotations

import pytest

from tamx import create_run, open_run
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .refusals import refused, tamx_cli


@pytest.fixture
def grid_run(tmp_path):
    path = tmp_path / "run"
    run = create_run(path, synthetic_run_info())
    run.write_sample(synthetic_sample("wide", grids=[(1, 17, 23)], n_answer=2, top_k=0))
    run.write_sample(synthetic_sample("small", grids=[(1, 5, 6), (1, 3, 3)], n_answer=2, top_k=0))
    return path


@pytest.mark.parametrize("kernel, largest", [(101, 23), (25, 23), (1001, 23)])
def test_a_kernel_wider_than_every_grid_is_refused_before_starting(grid_run, kernel, largest):
    out = refused(tamx_cli("explain", grid_run, "--kernel-size", kernel, "--no-prompt", "--quiet"))
    assert f"--kernel-size {kernel} is wider than every vision grid" in out
    assert "17x23 in sample 'wide'" in out and f"use an odd size up to {largest}" in out
    assert open_run(grid_run).variants("small") == [], "refused before any sample"


def test_the_bound_is_that_of_the_selected_samples(grid_run):
    out = refused(tamx_cli("explain", grid_run, "--samples", "small", "--kernel-size", "9", "--quiet"))
    assert "the largest is 5x6 in sample 'small'" in out and "up to 5" in out
    result = tamx_cli("explain", grid_run, "--samples", "small", "--kernel-size", "5", "--variant", "k5", "--quiet")
    assert result.exit_code == 0, result.output
    assert open_run(grid_run).maps("small", "k5").settings["kernel_size"] == 5


def test_a_kernel_is_not_bounded_without_a_filter(grid_run):
    result = tamx_cli("explain", grid_run, "--kernel-size", "101", "--filter", "none", "--no-eci", "--quiet")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "option, value, expected, code",
    [
        ("--kernel-size", "4", "kernel size must be odd", 2),  # a bad option (issue 24)
        ("--kernel-size", "0", "kernel size must be odd", 2),
        ("--kernel-size", "-3", "kernel size must be odd", 2),
        ("--kernel-size", "three", "is not a valid integer", 2),
        ("--workers", "0", "is not in the range", 2),
        ("--workers", "100000", "is not in the range", 2),
    ],
)
def test_explain_option_bounds(grid_run, option, value, expected, code):
    refused(tamx_cli("explain", grid_run, option, value, "--quiet"), expected, code=code)


def test_render_token_bounds(run_path, tmp_path):
    tamx_cli("explain", run_path, "--quiet", "--samples", "img")
    refused(
        tamx_cli(
            "render", run_path, "--out", tmp_path / "r", "--samples", "img", "--png", "--tokens", "999", "--quiet"
        ),
        "has answer tokens 0..19; --tokens asked for [999]",
    )
    refused(
        tamx_cli("render", run_path, "--out", tmp_path / "r", "--png", "--tokens", "x"), "'x' is not an integer", code=2
    )


# The commands that run a VLM share one declaration of --device and --dtype (pipeline/options.py).
MODEL_COMMANDS = {
    "encode": ["--model", "tamx-demo", "--out", "run"],
    "faithfulness": [".", "--model", "tamx-demo"],
    "serve": ["--model", "tamx-demo"],
}


def _option_help(command: str, option: str) -> str:
    """The help entry of one option as `tamx COMMAND --help` prints it, its wrapped lines joined."""
    lines = tamx_cli(command, "--help").output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(option + " "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("-")), len(lines))
    return " ".join(" ".join(lines[start:end]).split())


def test_the_model_commands_declare_device_and_dtype_alike():
    for option in ("--device", "--dtype"):
        entries = {command: _option_help(command, option) for command in MODEL_COMMANDS}
        assert len(set(entries.values())) == 1, entries
    assert "[auto|bf16|fp16|fp32]" in entries["encode"] and "bf16 is faster" in entries["encode"]


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_a_dtype_outside_the_choices_is_a_bad_option_in_every_model_command(command):
    refused(
        tamx_cli(command, *MODEL_COMMANDS[command], "--dtype", "fp64"),
        "'fp64' is not one of 'auto', 'bf16', 'fp16', 'fp32'",
        code=2,
    )
