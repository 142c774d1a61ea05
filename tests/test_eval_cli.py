"""`tamx eval` end to end on a stored run with masks (planted samples, explained by the stage)."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main
from tamx.pipeline.eval import evaluate_run
from tamx.pipeline.eval.stage import answer_words

from benchmarks.planted import build
from tamx import ExplainSettings, create_run, open_run
from tamx.datasets import load_dataset
from tamx.metrics import (
    PROTOCOLS,
    first_prompt_map,
    project_sample_maps,
    quantise_maps,
    score_answer,
    summarise,
)
from tamx.pos import Tagger, category_lemmas
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .reference_eval import paper_evaluate


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
    title, header, _, cam_row, tam_row = result.stdout.splitlines()[:5]
    assert title == "folder: protocol tamx, threshold Otsu"
    assert header.split()[:4] == ["variant", "ECI", "filter", "samples"] and "F1-IoU" in header
    assert cam_row.split()[:4] == ["cam", "-", "-", "3"]
    assert tam_row.split()[:5] == ["tam", "yes", "rank-gaussian", "k3", "3"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["settings"]["protocol"], summary["settings"]["threshold"]) == ("tamx", "otsu")
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


def test_paper_protocol_equals_the_reference_evaluation(planted, tmp_path):
    run_path, data = planted
    out = tmp_path / "paper"
    result = CliRunner().invoke(
        main,
        ["eval", str(run_path), "--dataset", "folder", "--data", str(data), "--out", str(out), "--quiet",
         "--protocol", "paper"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "folder: protocol paper, threshold Otsu"
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["settings"]["protocol"], summary["settings"]["threshold"]) == ("paper", "otsu")
    expected = paper_evaluate(run_path, data, ["cam", "tam"])
    for variant in ("cam", "tam"):
        got, want = summary["variants"][variant], expected[variant]
        assert (got["objects"], got["functions"]) == (want["objects"], want["functions"])
        for key in ("obj_iou", "func_iou", "f1_iou", "precision", "recall"):
            assert abs(got[key] - want[key]) < 1e-4, (variant, key, got[key], want[key])  # 0.01 points
    tamx = evaluate_run(run_path, "folder", data, ["tam"])
    assert summary["variants"]["tam"]["func_iou"] != tamx.summaries["tam"].func_iou  # the protocols differ


def test_the_default_protocol_is_the_evaluation_before_protocols(planted):
    """Default and explicit `tamx` give the numbers of the formula eval used before --protocol existed."""
    run_path, data = planted
    default = evaluate_run(run_path, "folder", data, ["tam"])
    explicit = evaluate_run(run_path, "folder", data, ["tam"], protocol="tamx", threshold=None)
    assert default.summaries == explicit.summaries
    run, records = open_run(run_path), {r.id: r for r in load_dataset("folder", data)}
    tagger = Tagger("rules", {w for r in records.values() for ws in category_lemmas(r.categories).values() for w in ws})
    objects, functions = [], []
    for sample_id in run.sample_ids():
        sample, maps = run.sample(sample_id, media=False), run.maps(sample_id, "tam")
        masks = records[sample_id].masks()
        categories = {n: ls for n, ls in category_lemmas(records[sample_id].categories).items() if n in masks}
        relevance = np.concatenate([maps.text_relevance, maps.answer_relevance], axis=1)
        quantised = quantise_maps(maps.final, maps.eci, relevance)
        before, after = first_prompt_map(sample, ExplainSettings.from_json(maps.settings))
        quantised[0] = quantise_maps(after[None], before[None])[0]
        projected, seen = project_sample_maps(sample, quantised, next(iter(masks.values())).shape)
        scores = score_answer(sample_id, answer_words(sample, tagger, categories), projected, masks, seen)
        objects += scores.objects
        functions += scores.functions
    assert default.summaries["tam"] == summarise(objects, functions)
    assert default.objects["tam"] == objects and default.functions["tam"] == functions


def test_a_fixed_threshold_binarises_at_that_level_of_the_normalised_map(planted, tmp_path):
    run_path, data = planted
    half = evaluate_run(run_path, "folder", data, ["tam"], threshold=0.5)
    assert {f.threshold for f in half.functions["tam"]} == {127.5}
    assert half.settings["threshold"] == 0.5
    otsu = evaluate_run(run_path, "folder", data, ["tam"])
    assert [o.iou for o in half.objects["tam"]] != [o.iou for o in otsu.objects["tam"]]
    result = CliRunner().invoke(
        main,
        ["eval", str(run_path), "--dataset", "folder", "--data", str(data), "--out", str(tmp_path / "h"), "--quiet",
         "--threshold", "0.5", "--variants", "tam"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "folder: protocol tamx, threshold 0.5"
    assert json.loads((tmp_path / "h" / "summary.json").read_text())["settings"]["threshold"] == 0.5


@pytest.mark.parametrize("value", ["1.5", "0", "1", "-0.2", "nan", "half", ""])
def test_a_bad_threshold_is_a_usage_error_before_any_work(value, tmp_path):
    result = CliRunner().invoke(
        main, ["eval", str(tmp_path), "--dataset", "folder", "--data", str(tmp_path), "--threshold", value]
    )
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "between 0 and 1" in errors[0] and "otsu" in errors[0]


def test_function_words_on_the_token_grid(planted):
    """func_on="grid" (the paper's) changes Func-IoU only: the same b, a share of the grid's cells."""
    run_path, data = planted
    tamx = evaluate_run(run_path, "folder", data, ["cam"])
    grid = evaluate_run(run_path, "folder", data, ["cam"], protocol=replace(PROTOCOLS["tamx"], func_on="grid"))
    assert grid.objects["cam"] == tamx.objects["cam"]
    assert [f.threshold for f in grid.functions["cam"]] == [f.threshold for f in tamx.functions["cam"]]
    assert [f.score for f in grid.functions["cam"]] != [f.score for f in tamx.functions["cam"]]
    for entry in grid.functions["cam"]:
        assert entry.score * 24 * 24 == pytest.approx(round(entry.score * 24 * 24))  # a share of 576 cells
