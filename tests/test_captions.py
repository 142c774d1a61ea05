"""Caption metrics (ROUGE-L, CIDEr-D, METEOR) of generated answers in `tamx eval`; a missing one never fails eval."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main
from tamx.pipeline.explain import explain_run

from benchmarks.planted import VOCAB, planted_sample
from tamx import ExplainSettings, create_run
from tamx.captions import format_captions, score_captions, words
from tamx.synthetic import synthetic_run_info

pytest.importorskip("pycocoevalcap")

REFERENCES = ["a dog and a cat.", "a red car.", "a tree and a bench."]
ANSWERS = ["a dog and a cat.", "a blue car.", "two horses."]


def test_words_drop_case_and_punctuation():
    assert words("A Red circle, and a BLUE square.") == "a red circle and a blue square"


def test_scores_rank_the_answers_against_their_references(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)  # METEOR (Java, ~10 s) has its own slow test
    refs = {str(i): [r] for i, r in enumerate(REFERENCES)}
    scores = score_captions({str(i): a for i, a in enumerate(ANSWERS)}, refs)
    rouge = [scores.per_sample[str(i)]["rouge_l"] for i in range(3)]
    assert rouge[0] == pytest.approx(1.0) and rouge[0] > rouge[1] > rouge[2] == 0.0
    cider = [scores.per_sample[str(i)]["cider"] for i in range(3)]
    assert cider[0] > cider[1] > cider[2] == 0.0
    assert scores.scores["rouge_l"] == pytest.approx(sum(rouge) / 3)
    # answers without a reference are left out
    assert score_captions({"x": "a dog."}, {"x": []}).samples == 0


def _run_with_answers(folder: Path, mode: str) -> tuple[Path, Path]:
    run_path, data = folder / "run", folder / "data"
    run = create_run(run_path, synthetic_run_info(VOCAB))
    data.mkdir(parents=True)
    entries = []
    for i, (answer, reference) in enumerate(zip(ANSWERS, REFERENCES)):
        sample, masks = planted_sample(f"s{i}", i, leak=0.0, noise=0.0)
        sample.meta = {"answer": answer, "mode": mode}
        run.write_sample(sample)
        for name, mask in masks.items():
            (data / f"s{i}").mkdir(exist_ok=True)
            cv2.imwrite(str(data / f"s{i}" / f"{name}.png"), mask.astype("uint8") * 255)
        cv2.imwrite(str(data / f"s{i}.png"), np.zeros((*mask.shape, 3), np.uint8))  # eval checks masks against it
        entries.append({"id": f"s{i}", "image": f"s{i}.png", "label": f"s{i}",
                        "categories": {n: k + 1 for k, n in enumerate(masks)}, "caption": reference})  # fmt: skip
    (data / "anno.json").write_text(json.dumps(entries))
    explain_run(run_path, ExplainSettings(eci="off", filter="none"), "cam")
    return run_path, data


def test_eval_scores_generated_answers_and_goes_on_without_meteor(tmp_path, monkeypatch):
    run_path, data = _run_with_answers(tmp_path, "generate")
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no Java here: METEOR cannot run
    out = tmp_path / "scores"
    result = CliRunner().invoke(
        main, ["eval", str(run_path), "--dataset", "folder", "--data", str(data), "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("captions"))
    assert "3 generated answers" in line and "ROUGE-L" in line and "METEOR n/a" in line
    assert "install a Java runtime" in result.stdout
    summary = json.loads((out / "summary.json").read_text())["captions"]
    assert summary["samples"] == 3 and summary["scores"]["meteor"] is None and summary["scores"]["rouge_l"] > 0
    rows = list(csv.DictReader((out / "captions.csv").open()))
    assert [r["sample"] for r in rows] == ["s0", "s1", "s2"] and float(rows[0]["rouge_l"]) == pytest.approx(1.0)
    # the maps are scored all the same
    assert json.loads((out / "summary.json").read_text())["variants"]["cam"]["objects"] > 0


def test_teacher_forced_answers_are_not_scored_as_captions(tmp_path):
    run_path, data = _run_with_answers(tmp_path, "teacher-forced")
    result = CliRunner().invoke(main, ["eval", str(run_path), "--dataset", "folder", "--data", str(data), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "the 3 answers are teacher-forced" in result.stdout


def test_without_the_package_every_caption_metric_is_unavailable_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocoevalcap.cider.cider", None)
    scores = score_captions({"a": "a dog."}, {"a": ["a dog."]})
    assert scores.scores == {"rouge_l": None, "cider": None, "meteor": None}
    assert "pip install 'tamx[eval]'" in format_captions(scores)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR 1.5 needs Java")
def test_meteor_runs_offline_from_the_packaged_jar():
    refs = {str(i): [r] for i, r in enumerate(REFERENCES)}
    scores = score_captions({str(i): a for i, a in enumerate(ANSWERS)}, refs)
    meteor = [scores.per_sample[str(i)]["meteor"] for i in range(3)]
    assert meteor[0] == pytest.approx(1.0, abs=1e-3) and meteor[0] > meteor[1] > meteor[2]
    assert 0 < scores.scores["meteor"] < 1


def test_a_failing_meteor_jar_is_reported_and_the_other_scores_stay(monkeypatch):
    import subprocess

    import tamx.captions as captions

    class Broken:
        """A METEOR wrapper whose jar exits at once (as a JVM that cannot start does)."""

        def __init__(self):
            import threading

            self.lock = threading.Lock()
            self.meteor_p = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)

        def compute_score(self, gts, res):
            self.lock.acquire()
            raise ValueError("could not convert string to float: ''")

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(captions, "_meteor", lambda: Broken)
    scores = score_captions({"a": "a dog."}, {"a": ["a dog."]})
    assert scores.scores["meteor"] is None and "METEOR jar failed" in scores.unavailable["meteor"]
    assert scores.scores["rouge_l"] == pytest.approx(1.0)
