"""Faithfulness records in the run store: round trip (local and s3://), survey, rewrite, old runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tamx import create_run, open_run
from tamx.errors import SampleError
from tamx.faithfulness import Faithfulness, auc, fractions
from tamx.synthetic import synthetic_run_info, synthetic_sample


def _record(variant: str = "tam", tokens=(0, 2), steps: int = 4, mask: bool = True) -> Faithfulness:
    rng = np.random.default_rng(0)
    t, s = len(tokens), steps + 1
    curve = lambda: rng.random((t, s)).astype(np.float32)  # noqa: E731
    return Faithfulness(
        variant=variant,
        settings={"steps": steps, "baseline": "blur"},
        tokens=np.array(tokens, np.int64),
        fractions=fractions(steps),
        full=rng.random(t).astype(np.float32),
        baseline=rng.random(t).astype(np.float32),
        deletion=curve(),
        insertion=curve(),
        random_deletion=curve(),
        random_insertion=curve(),
        mask_deletion=curve() if mask else None,
        mask_insertion=curve() if mask else None,
    )


def _run(location):
    run = create_run(location, synthetic_run_info())
    run.write_sample(synthetic_sample("a", grids=[(1, 4, 4)]))
    return run


def _same(a: Faithfulness, b: Faithfulness) -> None:
    assert a.variant == b.variant and a.settings == b.settings
    for name in ("tokens", "fractions", "full", "baseline", "deletion", "insertion", "random_deletion",
                 "random_insertion", "mask_deletion", "mask_insertion"):  # fmt: skip
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None and right is None) or np.array_equal(left, right)


def test_a_record_round_trips_and_is_not_garbage(tmp_path):
    run = _run(tmp_path / "run")
    record = _record()
    run.write_faithfulness("a", record)
    run.write_faithfulness("a", _record("cam", mask=False))
    again = open_run(tmp_path / "run")
    _same(again.faithfulness("a", "tam"), record)
    assert again.faithfulness("a", "cam").mask_deletion is None
    assert again.faithfulness_variants("a") == ["cam", "tam"]
    survey = again.survey()
    assert not survey.garbage and not survey.damaged
    assert sorted(p.name for p in (tmp_path / "run" / "samples" / "a" / "faithfulness").iterdir()) == [
        "cam.0", "cam.json", "tam.0", "tam.json"
    ]  # fmt: skip
    with pytest.raises(SampleError, match="already stored"):
        run.write_faithfulness("a", record)
    run.write_faithfulness("a", _record(tokens=(1,)), overwrite=True)
    assert open_run(tmp_path / "run").faithfulness("a", "tam").tokens.tolist() == [1]


def test_aucs_are_trapezoids_normalised_by_the_unperturbed_probability():
    record = _record(steps=2)
    record.deletion[:] = [[1.0, 0.5, 0.0], [0.5, 0.5, 0.5]]
    record.full[:] = [1.0, 0.5]
    aucs = record.aucs()
    assert np.allclose(aucs["deletion"], [0.5, 0.5]) and np.allclose(aucs["deletion_norm"], [0.5, 1.0])
    assert np.allclose(auc(np.array([0.0, 1.0]), np.array([0.0, 1.0])), 0.5)


def test_bad_records_are_refused_on_write(tmp_path):
    run = _run(tmp_path / "run")
    wrong = _record()
    wrong.insertion = wrong.insertion[:, :3]
    with pytest.raises(SampleError, match="faithfulness/tam/insertion"):
        run.write_faithfulness("a", wrong)
    with pytest.raises(SampleError, match="answer-token indices"):
        run.write_faithfulness("a", _record(tokens=(0, 99)))
    with pytest.raises(SampleError, match=r"no such record .*tamx faithfulness"):
        run.faithfulness("a", "tam")


def test_rewriting_the_sample_drops_its_records(tmp_path):
    run = _run(tmp_path / "run")
    run.write_faithfulness("a", _record())
    run.write_sample(synthetic_sample("a", grids=[(1, 4, 4)], seed=3), overwrite=True)
    assert run.faithfulness_variants("a") == []
    assert not (tmp_path / "run" / "samples" / "a" / "faithfulness" / "tam.json").exists()


def test_a_run_of_schema_2_0_opens_and_has_no_records(tmp_path):
    _run(tmp_path / "run")
    root = tmp_path / "run" / "tamx-run.json"
    attrs = json.loads(root.read_text())
    attrs["schema_minor"] = 0
    root.write_text(json.dumps(attrs))
    run = open_run(tmp_path / "run")
    assert run.schema == (2, 0) and run.faithfulness_variants("a") == []
    assert json.loads((tmp_path / "run" / "samples" / "a" / "sample.json").read_text())["schema"][0] == 2


def test_a_record_round_trips_through_memory_urls():
    run = _run("memory://faith/run")
    run.write_faithfulness("a", _record())
    _same(open_run("memory://faith/run").faithfulness("a", "tam"), _record())
    assert not open_run("memory://faith/run").survey().garbage
