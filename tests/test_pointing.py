"""Pointing accuracy: cell footprints from map_frames' boxes, ties, chance, and the `tamx eval` columns."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main
from tamx.pipeline.eval import evaluate_run

from tamx.errors import TamxError
from tamx.layout import MapFrame
from tamx.metrics import ObjectScore
from tamx.pointing import cell_cover, point_answer, point_hit, read_word_classes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from planted import build


def frame(height, width, box=None, offset=0):
    return MapFrame(offset=offset, height=height, width=width, block=0, kind="image", media=0, box=box)


def test_cell_cover_whole_image_and_padded_box():
    mask = np.zeros((10, 20), bool)
    mask[:, :10] = True  # the left half
    assert cell_cover(mask, [frame(2, 2)]).tolist() == [1.0, 0.0, 1.0, 0.0]
    # a square grid over a letterboxed image: 5 px of padding above and below; padding counts as uncovered
    cover = cell_cover(mask, [frame(2, 2, box=(0.0, -5.0, 20.0, 15.0))])
    assert cover.tolist() == [0.5, 0.0, 0.5, 0.0]
    # two frames (e.g. tiles) side by side, each with its own footprint, in map order
    tiles = [frame(1, 1, box=(0.0, 0.0, 10.0, 10.0)), frame(1, 1, box=(10.0, 0.0, 20.0, 10.0), offset=1)]
    assert cell_cover(mask, tiles).tolist() == [1.0, 0.0]


def test_peak_ties_count_as_a_share_and_a_flat_map_scores_chance():
    on = np.array([True, False, False, False])
    assert point_hit(np.array([0, 9, 1, 1]), on) == 0.0
    assert point_hit(np.array([9, 1, 1, 1]), on) == 1.0
    assert point_hit(np.array([9, 9, 1, 1]), on) == 0.5
    assert point_hit(np.zeros(4), on) == on.mean()


def test_point_answer_uses_the_entry_token_and_the_word_class():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # cell 0 of a 2 x 2 grid
    maps = np.array([[0, 0, 0, 5], [7, 0, 0, 0]], np.uint8)
    entry = ObjectScore("s", "red", "red", iou=0.5, precision=1.0, recall=0.5, token=1)
    (score,) = point_answer("s", [entry], maps, [frame(2, 2)], {"red": mask}, {"red": "colour"})
    assert (score.hit, score.chance, score.word_class) == (1.0, 0.25, "colour")
    entry.token = 0
    (score,) = point_answer("s", [entry], maps, [frame(2, 2)], {"red": mask}, {})
    assert (score.hit, score.word_class) == (0.0, "object")


def test_word_classes_file_is_checked(tmp_path):
    assert read_word_classes(tmp_path) == {}
    (tmp_path / "word_classes.json").write_text('{"red": "colour"}')
    assert read_word_classes(tmp_path) == {"red": "colour"}
    (tmp_path / "word_classes.json").write_text('["red"]')
    with pytest.raises(TamxError, match="must map category names"):
        read_word_classes(tmp_path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return build(tmp_path_factory.mktemp("planted"), samples=3, leak=0.8, noise=0.12, variants=["cam", "tam"])


def test_eval_reports_pointing_per_word_class_beside_the_iou(planted, tmp_path):
    run_path, data = planted
    classes = {"dog": "animal", "cat": "animal", "horse": "animal", "car": "thing", "tree": "thing", "bench": "thing"}
    (data / "word_classes.json").write_text(json.dumps(classes))
    try:
        out = tmp_path / "scores"
        result = CliRunner().invoke(
            main, ["eval", str(run_path), "--dataset", "folder", "--data", str(data), "--out", str(out), "--quiet"]
        )
    finally:
        (data / "word_classes.json").unlink()
    assert result.exit_code == 0, result.output
    title, header = result.stdout.splitlines()[:2]
    assert title == "folder: protocol tamx, threshold Otsu"
    assert header.split()[-4:] == ["Point", "objects", "func.", "method"]
    summary = json.loads((out / "summary.json").read_text())
    for variant in ("cam", "tam"):
        point = summary["variants"][variant]["pointing"]
        # the planted object maps are the object masks (plus interference and noise): far above chance
        assert point["count"] == 9 and 0 < point["chance"] < 0.5 < point["pointing"]
        rows = summary["per_word_class"][variant]
        assert {r["word_class"] for r in rows} <= {"animal", "thing"} and sum(r["count"] for r in rows) == 9
    assert summary["variants"]["tam"]["pointing"]["pointing"] >= 0.9
    table = result.stdout.split("word class")[1]
    assert "animal" in table or "thing" in table
    rows = list(csv.DictReader((out / "per_word_class.csv").open()))
    assert {r["variant"] for r in rows} == {"cam", "tam"}
    entries = [r for r in csv.DictReader((out / "entries.csv").open()) if r["kind"] == "noun"]
    assert len(entries) == 18 and all(0 <= float(r["pointing"]) <= 1 for r in entries)
    # without the classes file every object word is of the class "object"
    plain = evaluate_run(run_path, "folder", data, ["tam"])
    assert [r["word_class"] for r in plain.per_word_class("tam")] == ["object"]
    assert plain.pointing("tam").pointing == pytest.approx(summary["variants"]["tam"]["pointing"]["pointing"])
