"""`tamx eval` end to end on a stored run with masks (planted samples, explained by the stage)."""

from __future__ import annotations

import csv
import json
import sys

import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main
from tamx.pipeline.eval import evaluate_run

from benchmarks.planted import build
from tamx import create_run
from tamx.synthetic import synthetic_run_info, synthetic_sample


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return build(tmp_path_factory.mktemp("planted"), samples=3, leak=0.8, noise=0.12, variants=["cam", "tam"])


def test_eval_prints_the_table_and_writes_csv_and_json(planted, tmp_path):
    run_path, data = planted
    out = tmp_path / "scores"
    result = CliRunner().invoke(
        main, ["eval", str(run_path), "--dataset", "folder", "--data", str(data), "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    header, _, cam_row, tam_row = result.stdout.splitlines()[:4]
    assert header.split()[:4] == ["variant", "ECI", "filter", "samples"] and "F1-IoU" in header
    assert cam_row.split()[:4] == ["cam", "-", "-", "3"]
    assert tam_row.split()[:5] == ["tam", "yes", "rank-gaussian", "k3", "3"]
    summary = json.loads((out / "summary.json").read_text())
    expected = evaluate_run(run_path, "folder", data)
    for variant in ("cam", "tam"):
        assert summary["variants"][variant]["f1_iou"] == pytest.approx(expected.summaries[variant].f1_iou)
        assert summary["variants"][variant]["objects"] == 9  # three objects in each of three answers
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["variant"] for r in rows] == ["cam", "tam"]
    per_class = list(csv.DictReader((out / "per_class.csv").open()))
    assert sum(int(r["count"]) for r in per_class if r["variant"] == "tam") == 9
    per_word = list(csv.DictReader((out / "per_word.csv").open()))
    assert {r["kind"] for r in per_word} == {"noun", "function"}
    assert {"a", "the", "and", "there"} <= {r["word"] for r in per_word if r["kind"] == "function"}
    entries = list(csv.DictReader((out / "entries.csv").open()))
    assert len(entries) == 2 * (9 + summary["variants"]["cam"]["functions"])


def test_first_token_substitution_is_switchable(planted):
    run_path, data = planted
    on = evaluate_run(run_path, "folder", data, ["cam"], first_token=True)
    off = evaluate_run(run_path, "folder", data, ["cam"], first_token=False)
    # Only the first answer token (" a", a function word) changes: its map becomes the first prompt token's.
    changed = [(a.score, b.score) for a, b in zip(on.functions["cam"], off.functions["cam"]) if a.score != b.score]
    assert changed and all(a.word == b.word for a, b in zip(on.functions["cam"], off.functions["cam"]))
    assert [o.iou for o in on.objects["cam"]] == [o.iou for o in off.objects["cam"]]


def test_default_out_and_variant_selection(planted):
    run_path, data = planted
    result = CliRunner().invoke(
        main, ["eval", str(run_path), "--dataset", "folder", "--data", str(data), "--variants", "tam", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "cam" not in result.stdout.split()
    assert (run_path / "eval" / "folder" / "summary.json").is_file()
    bad = CliRunner().invoke(
        main, ["eval", str(run_path), "--dataset", "folder", "--data", str(data), "--variants", "x"]
    )
    assert bad.exit_code == 1 and "not stored" in bad.output


def test_samples_without_a_record_or_a_single_image(planted, tmp_path):
    _, data = planted
    run_path = tmp_path / "run"
    run = create_run(run_path, synthetic_run_info())
    run.write_sample(synthetic_sample("stranger", grids=[(1, 4, 4)], top_k=0))
    result = CliRunner().invoke(main, ["eval", str(run_path), "--dataset", "folder", "--data", str(data)])
    assert result.exit_code == 1 and "ids match" in result.output
    two = synthetic_sample("planted-000", grids=[(1, 4, 4), (1, 2, 2)], top_k=0)
    run.write_sample(two)
    from tamx.pipeline.explain import explain_run

    explain_run(run_path)
    result = CliRunner().invoke(main, ["eval", str(run_path), "--dataset", "folder", "--data", str(data)])
    assert result.exit_code == 1 and "one image" in result.output


def test_nltk_tagger_without_data_is_a_clear_error(planted, monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk", None)
    run_path, data = planted
    result = CliRunner().invoke(
        main, ["eval", str(run_path), "--dataset", "folder", "--data", str(data), "--tagger", "nltk"]
    )
    assert result.exit_code == 1 and "pip install nltk" in result.output
