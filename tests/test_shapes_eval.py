"""benchmarks/shapes_eval.py stays alive: a 3-image run with the bundled model scores every variant and class."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.demo.run import MODEL_DIR

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
    assert set(summary["per_class"]) == {"cam", "eci", "rank-gaussian", "tam"}
    words = summary["words"]["colour"]
    assert words == summary["words"]["shape"] >= 3
    for variant, row in summary["per_class"].items():
        assert row["colour_words"] == row["shape_words"] == words
        assert 0 <= row["colour_obj_iou"] <= 1 and 0 <= row["func_iou"] <= 1
        for kind in ("colour", "shape"):
            assert 0 <= summary["pointing"][f"{variant}/{kind}"] <= 1
    assert 0 < summary["chance"]["colour"] < 0.5 and 0 < summary["all_objects_iou"] <= 1
    assert (out / "eval" / "summary.csv").is_file()
    assert "chance pointing" in result.stdout
