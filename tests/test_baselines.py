"""Baselines (issue 22, docs/method.md "Baseline methods"): the logit lens at earlier layers,
attention and attention rollout, recorded by `tamx encode --layers / --attention` and computed
by `tamx explain --layer / --method`; checked against the model's own forward pass."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from tamx.pipeline.cli import main

import tamx
from tamx import ExplainSettings, create_run, explain_sample
from tamx.explain import read_positions
from tamx.synthetic import synthetic_run_info, synthetic_sample

# without torch ------------------------------------------------------------------------------


def _run_with(tmp_path, **kw):
    path = tmp_path / "run"
    run = create_run(path, synthetic_run_info(dtype="bfloat16"))
    run.write_sample(synthetic_sample("a", grids=[(1, 6, 8)], dtype="bfloat16", seed=3, **kw))
    return path


def test_stored_baselines_read_back_and_explain_through_the_cli(tmp_path):
    """The fields round-trip the store bit for bit; `--layer -1` is today's default to the byte;
    `--layer -2`, `--method attention|rollout` store variants named by method and layer."""
    path = _run_with(tmp_path, baselines=True)
    written = synthetic_sample("a", grids=[(1, 6, 8)], dtype="bfloat16", seed=3, baselines=True)
    stored = tamx.open_run(path).sample("a")
    arrays = ("lens_positions", "lens_hidden", "attention", "attention_prompt", "rollout", "rollout_prompt", "gradient")
    for name in arrays:
        assert getattr(stored, name).tobytes() == getattr(written, name).tobytes(), name
    assert stored.lens_layers == [-2, -4] and stored.attention_layers == [-1, -2] and stored.gradient_layer == -2
    runner = CliRunner()
    for args in ([], ["--layer", "-1", "--variant", "last"], ["--layer", "-2"], ["--method", "attention"],
                 ["--method", "rollout", "--filter", "median"], ["--method", "gradient"]):  # fmt: skip
        result = runner.invoke(main, ["explain", str(path), "--quiet", *args])
        assert result.exit_code == 0, result.output
    run = tamx.open_run(path)
    assert run.variants("a") == ["attention", "gradient", "last", "rollout-median", "tam", "tam_l-2"]
    default, last = run.maps("a", "tam"), run.maps("a", "last")
    for name in ("cam", "eci", "final", "text_relevance", "candidate_maps", "prompt_maps"):
        assert getattr(default, name).tobytes() == getattr(last, name).tobytes(), name
    assert "layer" not in run.maps_settings("a", "tam")  # the default settings are stored as before
    attention = run.maps("a", "attention")
    np.testing.assert_array_equal(attention.final, written.attention.mean(axis=0))
    np.testing.assert_array_equal(attention.prompt_maps, written.attention_prompt.mean(axis=0))
    assert run.maps_settings("a", "tam_l-2")["layer"] == -2
    info = runner.invoke(main, ["info", str(path)])
    assert "baselines attention" in info.output and "layers" in info.output and "gradients" in info.output
    (summary,) = json.loads(runner.invoke(main, ["info", str(path), "--json"]).output)["samples"]
    assert summary["baseline_bytes"]["layers"] > written.lens_hidden.nbytes // 4  # stored, compressed
    plain = json.loads(runner.invoke(main, ["info", str(_run_with(tmp_path / "plain")), "--json"]).output)
    assert plain["samples"][0]["baseline_bytes"] == {}


def test_the_logit_lens_reads_only_the_recorded_positions():
    """tam at layer -2 is TAM of the sample whose hidden states are that layer's; the positions
    encode did not store (nothing explain reads) do not matter."""
    sample = synthetic_sample("a", grids=[(1, 6, 8), (2, 4, 4)], seed=4, baselines=True)
    rng = np.random.default_rng(9)
    hidden = rng.standard_normal(sample.hidden.shape).astype(np.float32)
    hidden[sample.lens_positions] = sample.lens_hidden[0]
    swapped = synthetic_sample("a", grids=[(1, 6, 8), (2, 4, 4)], seed=4)
    swapped.hidden = hidden
    lens = explain_sample(sample, ExplainSettings(layer=-2))
    reference = explain_sample(swapped)
    assert lens.variant == "tam_l-2"
    for name in ("cam", "eci", "final", "text_relevance", "candidate_maps", "prompt_maps"):
        assert getattr(lens, name).tobytes() == getattr(reference, name).tobytes(), name
    assert np.array_equal(sample.lens_positions, read_positions(sample))


def test_a_run_without_the_recording_is_refused_naming_the_encode_option(tmp_path):
    path = _run_with(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["explain", str(path), "--layer", "-8"])
    assert result.exit_code == 1 and "tamx encode --layers -1,-8" in result.output
    for method, option in (("attention", "--attention"), ("rollout", "--attention"), ("gradient", "--gradients")):
        result = runner.invoke(main, ["explain", str(path), "--method", method])
        assert result.exit_code == 1 and f"tamx encode {option}" in result.output, result.output
    recorded = _run_with(tmp_path / "b", baselines=True)
    result = runner.invoke(main, ["explain", str(recorded), "--layer", "-3"])
    assert result.exit_code == 1 and "tamx encode --layers -1,-3" in result.output
    bad = runner.invoke(main, ["explain", str(recorded), "--layer", "2"])
    assert bad.exit_code == 2 and "--layer" in bad.output
    bad = runner.invoke(main, ["explain", str(recorded), "--method", "attention", "--layer", "-2"])
    assert bad.exit_code == 2 and "--layer" in bad.output
    assert tamx.open_run(recorded).variants("a") == [] and tamx.open_run(path).variants("a") == []
