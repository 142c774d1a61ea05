"""Baselines (issue 22, docs/method.md "Baseline methods"): the logit lens at earlier layers,
attention and attention rollout, recorded by `tamx encode --layers / --attention` and computed
by `tamx explain --layer / --method`; checked against the model's own forward pass."""

from __future__ import annotations

import html
import json
import re

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
    assert run.variants("a") == ["attention", "gradient_l-2", "last", "rollout-median", "tam", "tam_l-2"]
    default, last = run.maps("a", "tam"), run.maps("a", "last")
    for name in ("cam", "eci", "final", "text_relevance", "candidate_maps", "prompt_maps"):
        assert getattr(default, name).tobytes() == getattr(last, name).tobytes(), name
    assert "layer" not in run.maps_settings("a", "tam")  # the default settings are stored as before
    attention = run.maps("a", "attention")
    np.testing.assert_array_equal(attention.final, written.attention.mean(axis=0))
    np.testing.assert_array_equal(attention.prompt_maps, written.attention_prompt.mean(axis=0))
    assert run.maps_settings("a", "tam_l-2")["layer"] == -2
    assert run.maps_settings("a", "gradient_l-2")["layer"] == -2  # the layer encode recorded Grad-CAM at
    info = runner.invoke(main, ["info", str(path)])
    assert "baselines attention" in info.output and "layers" in info.output and "gradients" in info.output
    (summary,) = json.loads(runner.invoke(main, ["info", str(path), "--json"]).output)["samples"]
    assert summary["baseline_bytes"]["layers"] > written.lens_hidden.nbytes // 4  # stored, compressed
    plain = json.loads(runner.invoke(main, ["info", str(_run_with(tmp_path / "plain")), "--json"]).output)
    assert plain["samples"][0]["baseline_bytes"] == {}


def test_the_gradient_variant_is_named_by_its_recorded_layer_in_info_and_eval(tmp_path):
    """`tamx explain --method gradient` stores `gradient_l-4` for Grad-CAM recorded at layer -4;
    `tamx info` lists it and eval's table labels it gradient@-4; samples recorded at different
    layers are refused once, naming them."""
    from benchmarks.planted import build

    run_path, data = build(tmp_path, samples=2, leak=0.8, noise=0.12, variants=["cam"])
    run = tamx.open_run(run_path, mode="a")
    for i, sample_id in enumerate(run.sample_ids()):
        sample = run.sample(sample_id)
        n, m, v = len(sample.answer_positions), len(sample.context_positions), sample.vision_size
        sample.gradient_layer = -4
        sample.gradient = np.random.default_rng(i).random((n, v)).astype(np.float32)
        sample.gradient_prompt = np.random.default_rng(i).random((m, v)).astype(np.float32)
        run.write_sample(sample, overwrite=True)
    runner = CliRunner()
    result = runner.invoke(main, ["explain", str(run_path), "--method", "gradient", "--quiet"])
    assert result.exit_code == 0, result.output
    info = json.loads(runner.invoke(main, ["info", str(run_path), "--json"]).output)
    assert info["variants"] == {"gradient_l-4": 2}  # the rewrite dropped cam
    scored = runner.invoke(main, ["eval", str(run_path), "--dataset", "folder", "--data", str(data), "--quiet",
                                  "--out", str(tmp_path / "scores")])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    row = next(line for line in scored.stdout.splitlines() if line.startswith("gradient_l-4 "))
    assert row.split()[-1] == "gradient@-4"
    sample = run.sample("planted-001")
    sample.gradient_layer = -2
    run.write_sample(sample, overwrite=True)
    mixed = runner.invoke(main, ["explain", str(run_path), "--method", "gradient"])
    assert mixed.exit_code == 1 and "(layer -4: planted-000; layer -2: planted-001)" in mixed.output, mixed.output
    assert tamx.open_run(run_path).variants("planted-001") == []  # refused before any work


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


def test_figures_and_the_report_page_label_variants_by_method_and_layer(tmp_path, chromium):
    """One label from the stored settings (tamx.methods.variant_title) heads the page's columns,
    is in the page data and titles the figures: "TAM, layer -2", "attention (head mean)",
    "rollout", "Grad-CAM, layer -2", and a custom name beside its label ("last (TAM)")."""
    import html as html_lib
    import re

    path = _run_with(tmp_path, baselines=True)
    runner = CliRunner()
    for args in ([], ["--layer", "-2"], ["--method", "attention"], ["--method", "rollout"], ["--method", "gradient"],
                 ["--variant", "last", "--layer", "-1"]):  # fmt: skip
        assert runner.invoke(main, ["explain", str(path), "--quiet", *args]).exit_code == 0
    out = tmp_path / "html"
    result = runner.invoke(main, ["render", str(path), "--out", str(out), "--format", "svg", "--tokens", "0"])
    assert result.exit_code == 0, result.output
    labels = {"tam": "TAM", "tam_l-2": "TAM, layer -2", "attention": "attention (head mean)", "rollout": "rollout",
              "gradient_l-2": "Grad-CAM, layer -2", "last": "last (TAM)"}  # fmt: skip
    page = (out / "samples" / "a.html").read_text()
    data = json.loads(html_lib.unescape(re.search(r'id="tamx-data">(.*?)</script>', page, re.S).group(1)))
    assert {name: view["label"] for name, view in data["variants"].items()} == labels
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", (out / "figures" / "a" / "variants.svg").read_text())
    assert set(labels.values()) <= set(texts), texts  # the column titles of the tokens x variants figure
    token = (out / "figures" / "a" / "token_000.svg").read_text()
    assert "· TAM" in token  # the token figure of the default variant names its method

    browser_page = chromium.new_page()
    browser_page.goto((out / "samples" / "a.html").resolve().as_uri())
    browser_page.wait_for_selector("body[data-ready='1']")
    for name in labels:
        browser_page.check(f"input[name=variant][value='{name}']")
    headings = {name: browser_page.inner_text(f".column[data-variant='{name}'] h2") for name in labels}
    browser_page.close()
    assert headings == labels


def test_serve_recomputes_a_layer_and_a_method_as_explain_stores_them(tmp_path):
    """`tamx serve`'s live maps for layer=-2 and method=gradient are the maps `tamx explain
    --layer -2` and `--method gradient` store (the same page view, bit for bit); a layer the
    sample's encode did not record is a 400 naming the option that records it."""
    from starlette.testclient import TestClient
    from tamx.pipeline.serve import make_app

    path = _run_with(tmp_path, baselines=True)
    runner = CliRunner()
    for args in (["--layer", "-2"], ["--method", "gradient"], ["--method", "attention"]):
        assert runner.invoke(main, ["explain", str(path), "--quiet", *args]).exit_code == 0
    with TestClient(make_app({"r": path}, allowed_hosts=("testserver",))) as client:
        stored = client.get("/api/runs/r/samples/a").json()["variants"]
        for params, variant in (({"layer": -2}, "tam_l-2"), ({"method": "gradient"}, "gradient_l-2"),
                                ({"method": "attention"}, "attention")):  # fmt: skip
            live = client.get("/api/runs/r/samples/a/live", params=params)
            assert live.status_code == 200, live.text
            body = live.json()
            assert body["name"] == variant and body["settings"] == stored[variant]["settings"]
            for key in ("answer", "answer_text", "prompt"):
                assert body["view"][key] == stored[variant][key], (variant, key)
        missing = client.get("/api/runs/r/samples/a/live", params={"layer": -3})
        assert missing.status_code == 400 and "tamx encode --layers -1,-3" in missing.text
        bad = client.get("/api/runs/r/samples/a/live", params={"layer": "2"})
        assert bad.status_code == 400 and "layer" in bad.text


def test_serve_lists_what_a_sample_recorded_and_labels_the_live_maps(tmp_path):
    """The page data says which methods and layers a sample can be explained with (serve's
    selectors offer those; an ordinary sample: TAM at the last layer only); the live maps carry
    their label; a save without a name is named as `tamx explain` names it (gradient_l-2)."""
    from starlette.testclient import TestClient
    from tamx.pipeline.serve import make_app

    from tamx.methods import recorded_methods
    from tamx.page import MethodView

    path, plain = _run_with(tmp_path, baselines=True), _run_with(tmp_path / "plain")
    recorded = [
        {"name": "tam", "title": "TAM", "layers": [-1, -2, -4], "filter": "rank-gaussian"},
        {"name": "attention", "title": "attention (head mean)", "layers": [], "filter": "none"},
        {"name": "rollout", "title": "rollout", "layers": [], "filter": "none"},
        {"name": "gradient", "title": "Grad-CAM", "layers": [-2], "filter": "none"},
    ]
    assert all(set(view) == set(MethodView.__annotations__) for view in recorded)
    with TestClient(make_app({"r": path, "plain": plain}, allowed_hosts=("testserver",))) as client:
        assert client.get("/api/runs/r/samples/a").json()["methods"] == recorded
        only_tam = [{"name": "tam", "title": "TAM", "layers": [-1], "filter": "rank-gaussian"}]
        assert client.get("/api/runs/plain/samples/a").json()["methods"] == only_tam
        page = client.get("/?run=r&sample=a").text  # the page opens with the same data
        embedded = re.search(r'id="tamx-data">(.*?)</script>', page, re.S).group(1)
        assert json.loads(html.unescape(embedded))["methods"] == recorded
        for params, label in (({}, "TAM"), ({"layer": -2}, "TAM, layer -2"),
                              ({"layer": -4, "eci": "off", "filter": "none"}, "CAM, layer -4"),
                              ({"method": "attention"}, "attention (head mean)"),
                              ({"method": "rollout", "filter": "median"}, "rollout"),
                              ({"method": "gradient"}, "Grad-CAM, layer -2"),
                              ({"method": "gradient", "layer": -2}, "Grad-CAM, layer -2")):  # fmt: skip
            body = client.get("/api/runs/r/samples/a/live", params=params).json()
            assert body["label"] == label and body["view"]["label"] == f"live: {label}", params
        saved = client.post("/api/runs/r/variants", json={"method": "gradient", "samples": ["a"]})
        assert saved.status_code == 200 and saved.json()["variant"] == "gradient_l-2", saved.text
    assert tamx.open_run(path).maps_settings("a", "gradient_l-2") == (
        ExplainSettings(method="gradient", filter="none", layer=-2).to_json()
    )
    assert recorded_methods(tamx.open_run(plain).sample("a")) == {"tam": [-1]}
