"""One contract per registry, run over every entry (the way every zarr store runs one suite):
ECI weightings (tamx.eci.ECI_WEIGHTINGS), map methods (tamx.methods.METHODS) and eval metrics
(tamx.eval_metrics.EVAL_METRICS). Each list is read from its registry when the tests are
collected, so an entry added there is covered; each contract also runs on a toy entry added
here, which then goes through the CLI, eval and serve like the built-in ones."""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main
from tamx.pipeline.eval import evaluate_run
from tamx.pipeline.eval.stage import answer_words, write_results

from benchmarks.planted import build
from tamx import ExplainSettings, TamxError, explain_sample, open_run
from tamx.datasets import load_dataset
from tamx.eci import ECI_WEIGHTINGS, Weighting, context_weights, weighted_modes
from tamx.eval_metrics import EVAL_METRICS, EvalMetric, MapContext, score_metrics
from tamx.methods import METHODS, Method, compute_maps, recorded_methods
from tamx.metrics import project_sample_maps, quantise_sample_maps
from tamx.pos import Tagger, category_lemmas
from tamx.synthetic import synthetic_sample

from .test_explain import assert_close, reference_for


# The toys: what adding an ECI mode, a method and a metric takes (a function and a registry line each).
def recency_weights(r: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Toy ECI mode: later context tokens weigh more (rank 1, 2, ... among the valid ones)."""
    ranks = np.cumsum(valid, axis=1, dtype=np.float32) * valid
    return ranks / np.maximum(ranks.sum(axis=1, keepdims=True), 1.0)


def peak_score(context: MapContext) -> list[float]:
    """Toy metric: the peak of every answer token's quantised map, as a fraction of 255."""
    return [float(row.max(initial=0)) / 255 for row in np.asarray(context.quantised)]


TOY_WEIGHTING = Weighting(recency_weights, "eci-recency", "rec")
TOY_METHOD = Method(lambda sample, settings: explain_sample(sample, replace(settings, eci="off")), ("hidden",), "toy")
TOY_METRIC = EvalMetric(peak_score, lambda entries: {"peak": float(np.mean([p for e in entries for p in e] or [0]))})

WEIGHTINGS = [*ECI_WEIGHTINGS, "recency"]
METHOD_NAMES = [*METHODS, "toy-cam"]
METRICS = [*EVAL_METRICS, "peak"]


@pytest.fixture(autouse=True)
def toys(monkeypatch):
    monkeypatch.setitem(ECI_WEIGHTINGS, "recency", TOY_WEIGHTING)
    monkeypatch.setitem(METHODS, "toy-cam", TOY_METHOD)
    monkeypatch.setitem(EVAL_METRICS, "peak", TOY_METRIC)


def _one_line_error(call) -> str:
    with pytest.raises(TamxError) as caught:
        call()
    message = str(caught.value)
    assert message and "\n" not in message
    return message


SAMPLE = synthetic_sample(grids=[(1, 6, 8), (2, 4, 4)], n_answer=7, n_context=9, seed=5, baselines=True)


# ECI weightings -----------------------------------------------------------------------------


def _weight_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    valid = rng.random((6, 9)) < 0.6
    valid[0] = False  # a target with no valid context token
    return np.where(valid, rng.random((6, 9)), 0).astype(np.float32), valid


@pytest.mark.parametrize("name", WEIGHTINGS)
def test_eci_weighting_contract(name):
    """Weights: [T, Q] float32, finite, >= 0, 0 off the valid tokens, the same bytes twice; bad shapes refused."""
    if ECI_WEIGHTINGS[name].weights is None:
        assert name not in weighted_modes()
        assert "weights nothing" in _one_line_error(lambda: context_weights(name, *_weight_inputs()))
        return
    r, valid = _weight_inputs()
    weights = context_weights(name, r, valid)
    assert weights.shape == r.shape and weights.dtype == np.float32
    assert np.isfinite(weights).all() and (weights >= 0).all() and not weights[~valid].any()
    assert context_weights(name, r, valid).tobytes() == weights.tobytes()
    assert "[T, Q]" in _one_line_error(lambda: context_weights(name, r, valid[:, :-1]))
    assert "[T, Q]" in _one_line_error(lambda: context_weights(name, r, valid.astype(np.float32)))


@pytest.mark.parametrize("name", WEIGHTINGS)
def test_every_eci_mode_explains_and_names_its_variant(name):
    """Through explain: maps of the sample's shape, finite, the same bytes twice, and the mode's variant name."""
    settings = ExplainSettings(eci=name)
    maps = explain_sample(SAMPLE, settings)
    assert maps.final.shape == maps.eci.shape == (7, SAMPLE.vision_size)
    assert all(np.isfinite(a).all() for a in (maps.cam, maps.eci, maps.final, maps.scale))
    again = explain_sample(SAMPLE, settings)
    assert all(getattr(again, f).tobytes() == getattr(maps, f).tobytes() for f in ("cam", "eci", "final", "scale"))
    part = ECI_WEIGHTINGS[name].variant
    assert settings.variant_name() == ("tam" if part == "eci" else "-".join(p for p in (part, "rank-gaussian") if p))
    if ECI_WEIGHTINGS[name].weights is None:
        assert maps.eci.tobytes() == maps.cam.tobytes()


def test_an_unknown_eci_mode_is_refused_in_one_line():
    message = _one_line_error(lambda: ExplainSettings(eci="nope"))
    assert all(name in message for name in WEIGHTINGS)


@pytest.mark.parametrize("name", [n for n in ECI_WEIGHTINGS if n != "recency"])
def test_the_built_in_modes_are_the_reference_method(name):
    """The registry computes what docs/method.md's float64 reference does for each built-in mode."""
    maps = explain_sample(SAMPLE, ExplainSettings(eci=name))
    ref = reference_for(SAMPLE, eci=name)
    for field in ("cam", "eci", "tam"):
        assert_close(getattr(maps, "final" if field == "tam" else field), ref[field], field)


def test_a_toy_eci_mode_reaches_the_cli_eval_label_and_serve(run_path):
    """The CLI's choices and serve's controls read the registry: the toy is explained and listed."""
    from starlette.testclient import TestClient
    from tamx.pipeline.eval.stage import _settings_label
    from tamx.pipeline.serve import make_app

    result = CliRunner().invoke(main, ["explain", str(run_path), "--eci-weights", "recency", "--quiet"])
    assert result.exit_code == 0, result.output
    run = open_run(run_path)
    maps = run.maps("img", "eci-recency-rank-gaussian")
    assert maps.settings["eci"] == "recency" and np.isfinite(maps.final).all()
    assert _settings_label(maps.settings)[0] == "rec"
    bad = CliRunner().invoke(main, ["explain", str(run_path), "--eci-weights", "off"])
    assert bad.exit_code == 2 and "'relevance', 'uniform', 'recency'" in bad.output
    with TestClient(make_app({"a": str(run_path)}), base_url="http://127.0.0.1") as client:
        assert client.get("/api/config").json()["eci_modes"] == WEIGHTINGS


# Map methods --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_contract(name):
    """Maps: [N, V] per answer token, finite, the same bytes twice, at every layer it lists for the
    sample (what serve offers); a sample without a field it reads refused, and the method not listed."""
    maps = compute_maps(name, SAMPLE)
    n, v = len(SAMPLE.answer_positions), SAMPLE.vision_size
    assert maps.final.shape == maps.cam.shape == (n, v) and maps.final.dtype == np.float32
    assert np.isfinite(maps.final).all() and (maps.final >= 0).all()
    assert compute_maps(name, SAMPLE).final.tobytes() == maps.final.tobytes()
    for layer in recorded_methods(SAMPLE)[name]:
        assert np.isfinite(compute_maps(name, SAMPLE, ExplainSettings(layer=layer)).final).all()
    for needed in METHODS[name].needs:
        broken = copy.copy(SAMPLE)
        object.__setattr__(broken, needed, None)
        assert needed in _one_line_error(lambda broken=broken: compute_maps(name, broken))
        assert name not in recorded_methods(broken)


def test_an_unknown_method_is_refused_in_one_line():
    assert "tam" in _one_line_error(lambda: compute_maps("nope", SAMPLE))


def test_the_tam_method_is_explain():
    assert compute_maps("tam", SAMPLE).final.tobytes() == explain_sample(SAMPLE).final.tobytes()


# Eval metrics -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return build(tmp_path_factory.mktemp("planted"), samples=2, leak=0.8, noise=0.12, variants=["cam", "tam"])


@pytest.fixture(scope="module")
def context(planted):
    """The MapContext eval builds for the first planted sample's "tam" maps."""
    run_path, data = planted
    record = load_dataset("folder", data)[0]
    run = open_run(run_path)
    sample = run.sample(record.id, media=False)
    masks = record.masks()
    lemmas = category_lemmas(record.categories)
    words = answer_words(sample, Tagger("rules", {w for ws in lemmas.values() for w in ws}), lemmas)
    quantised = quantise_sample_maps(sample, run.maps(record.id, "tam"))
    projected, seen = project_sample_maps(sample, quantised, next(iter(masks.values())).shape)
    return MapContext(record.id, sample, words, quantised, projected, seen, masks)


@pytest.mark.parametrize("name", METRICS)
def test_eval_metric_contract(name, context):
    """Columns: named numbers, finite, JSON-serialisable, the same bytes twice; disagreeing arrays refused."""
    entries = score_metrics(context, last=name)[name]
    metric = EVAL_METRICS[name]
    columns = metric.columns([entries])
    assert columns and all(isinstance(k, str) and np.isfinite(v) for k, v in columns.items())
    again = score_metrics(context, last=name)[name]
    assert json.dumps(metric.summary_json([again])) == json.dumps(metric.summary_json([entries]))
    assert list(metric.columns([entries, again])) == list(columns)  # the same columns over more samples
    small = {k: m[:-1] for k, m in context.masks.items()}
    assert "projected size" in _one_line_error(lambda: score_metrics(replace(context, masks=small), last=name))
    rows = replace(context, quantised=context.quantised[:-1])
    assert "per answer token" in _one_line_error(lambda: score_metrics(rows, last=name))


def test_an_unknown_metric_is_refused_in_one_line(context):
    assert "pointing" in _one_line_error(lambda: score_metrics(context, last="nope"))


def test_summary_files_hold_every_metric_and_the_breakdowns_agree(planted, tmp_path):
    """summary.csv / summary.json: every metric's columns in registry order (the toy's last), equal to the
    Obj/Func/F1 summary and the pointing the stage's breakdowns give (the columns before the registry)."""
    run_path, data = planted
    result = evaluate_run(run_path, "folder", data)
    paths = write_results(result, tmp_path)
    with open(paths["summary.csv"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = ["obj_iou", "func_iou", "f1_iou", "precision", "recall", "objects", "functions"]
    assert list(rows[0]) == ["variant", "eci", "filter", "samples", *columns, "pointing", "pointing_chance", "peak"]
    with open(paths["summary.json"], encoding="utf-8") as handle:
        summary = json.load(handle)
    for row in rows:
        variant = row["variant"]
        want = result.summaries[variant]
        assert [float(row[c]) for c in columns] == [float(getattr(want, c)) for c in columns]
        assert float(row["pointing"]) == result.pointing(variant).pointing
        assert summary["variants"][variant]["pointing"] == result.pointing(variant).to_json()
        assert 0 < float(row["peak"]) <= 1 and summary["variants"][variant]["peak"] == float(row["peak"])
