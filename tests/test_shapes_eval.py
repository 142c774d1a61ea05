"""benchmarks/shapes_eval.py stays alive: a 3-image run with the bundled model scores every variant and word class."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tamx.pipeline.demo import MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL_DIR / "config.json").is_file(), reason="the bundled demo model is not built")
def test_shapes_benchmark_reports_every_variant_and_word_class(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "benchmarks/shapes_eval.py", "--out", str(out), "--samples", "3", "--seed", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "shapes_eval.json").read_text())
    assert set(summary["variants"]) == set(summary["per_word_class"]) == {"cam", "eci", "rank-gaussian", "tam"}
    for variant, rows in summary["per_word_class"].items():
        by_class = {r["word_class"]: r for r in rows}
        assert set(by_class) == {"colour", "shape"}
        assert by_class["colour"]["count"] == by_class["shape"]["count"] >= 3
        for row in rows:
            assert 0 <= row["pointing"] <= 1 and 0 < row["chance"] < 0.5 and 0 <= row["obj_iou"] <= 1
        assert summary["variants"][variant]["pointing"]["count"] == 2 * by_class["colour"]["count"]
    assert set(summary["teacher_forced_top1"]) == {"colour", "shape", "other"}
    assert (out / "eval" / "summary.csv").is_file() and (out / "eval" / "per_word_class.csv").is_file()
    assert "word class" in result.stdout and "chance" in result.stdout


@pytest.mark.slow
def test_vision_probe_runs_and_reports_cell_and_object_accuracy():
    pytest.importorskip("transformers")
    result = subprocess.run(
        [sys.executable, "benchmarks/shapes_vision_probe.py", "--steps", "2", "--eval-every", "1", "--layers", "1",
         "--hidden", "32", "--heads", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["grid"] == 12 and [r["step"] for r in records[1:]] == [1, 2]
    for r in records[1:]:
        assert all(0 <= r[k] <= 1 for k in ("colour_cell", "shape_cell", "colour_object", "shape_object"))


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL_DIR / "config.json").is_file(), reason="the bundled demo model is not built")
def test_caption_benchmark_scores_exact_answers_and_objects(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "captions.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/demo_captions.py", "--scenes", "6", "--two-images", "2", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads(out.read_text())
    assert scores["exact"]["one image, all"]["n"] == 6 and scores["exact"]["two images"]["n"] == 2
    assert sum(v["n"] for k, v in scores["exact"].items() if k.endswith("object(s)")) == 6
    objects = scores["per_object"]
    assert objects["all"]["n"] == objects["one image"]["n"] + objects["two images"]["n"] >= 8
    assert all(0 <= v[k] <= 1 for v in objects.values() for k in ("colour", "shape"))
    # the bundled model captions these held-out one-image scenes right (docs/demo.md: 0.994 on 500)
    assert scores["exact"]["one image, all"]["rate"] >= 5 / 6
    bad = subprocess.run(
        [sys.executable, "benchmarks/demo_captions.py", "--model", str(tmp_path / "none"), "--scenes", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode != 0 and bad.stderr.startswith("error: cannot load model") and "Traceback" not in bad.stderr
