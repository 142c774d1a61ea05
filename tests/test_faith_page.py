"""Faithfulness curves on the report page: the page data carries a variant's stored records,
`tamx render` and `tamx serve` both give them, the page draws the selected token's curves with
their AUCs, and a run without records renders exactly as before."""

from __future__ import annotations

import numpy as np
import pytest
from starlette.testclient import TestClient
from tamx.pipeline.render import render_run
from tamx.pipeline.serve import ServerThread, make_app

from tamx import ExplainSettings, create_run, explain_sample, open_run
from tamx.page import FaithfulnessView
from tamx.report import page_data, unpack_array
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .test_browser import Page
from .test_faithfulness_store import _record
from .test_page import TESTSERVER, assert_declared, embedded
from .test_serve_browser import LivePage

TOKENS = (0, 2)  # the answer tokens with curves; the others have none


def _faith_record(variant: str = "tam"):
    record = _record(variant, tokens=TOKENS, steps=4)
    record.mask_deletion[1] = np.nan  # token 2 has no mask: NaN curves, no mask AUC
    record.mask_insertion[1] = np.nan
    return record


def _make_run(path, records: bool):
    run = create_run(path, synthetic_run_info())
    for sample in (synthetic_sample("a", grids=[(1, 4, 5)]), synthetic_sample("b", grids=[(1, 3, 3)], seed=1)):
        run.write_sample(sample)
        run.write_maps(sample.id, explain_sample(sample))
        run.write_maps(sample.id, explain_sample(sample, ExplainSettings(eci="off", filter="none")))
    if records:
        run.write_faithfulness("a", _faith_record("tam"))
    return run


def test_page_data_carries_the_records_curves_and_aucs(tmp_path):
    run = _make_run(tmp_path / "run", records=True)
    sample = run.sample("a")
    maps = {v: run.maps("a", v) for v in run.variants("a")}
    record = run.faithfulness("a", "tam")
    data = page_data(sample, maps, run.info, faithfulness={"tam": record})
    assert_declared(data)
    assert "faithfulness" not in data["variants"]["cam"]  # no record: no key
    view = data["variants"]["tam"]["faithfulness"]
    assert set(view) == set(FaithfulnessView.__annotations__)
    assert view["tokens"] == list(TOKENS) and view["steps"] == 4
    curves = unpack_array(view["curves"])
    assert curves.shape == (6, len(TOKENS), 5)
    for c, name in enumerate(view["names"]):
        np.testing.assert_array_equal(curves[c], getattr(record, name))
        aucs = record.aucs()[name]
        assert [a is None for a in view["aucs"][c]] == np.isnan(aucs).tolist()
        assert np.allclose([np.nan if a is None else a for a in view["aucs"][c]], aucs, equal_nan=True)
    assert view["aucs"][view["names"].index("mask_deletion")][1] is None


def test_records_only_add_their_key_and_serve_sends_what_render_writes(tmp_path):
    """A run without records renders byte-identical pages whichever records exist elsewhere; adding a
    record changes that sample's page data by the one `faithfulness` key; serve gives the same."""
    run = _make_run(tmp_path / "run", records=False)
    render_run(tmp_path / "run", tmp_path / "before")
    run.write_faithfulness("a", _faith_record("tam"))
    render_run(tmp_path / "run", tmp_path / "after")
    before_b = (tmp_path / "before" / "samples" / "b.html").read_bytes()
    assert (tmp_path / "after" / "samples" / "b.html").read_bytes() == before_b
    assert all("faithfulness" not in view for view in embedded(before_b.decode())["variants"].values())
    before, after = (embedded((tmp_path / d / "samples" / "a.html").read_text()) for d in ("before", "after"))
    view = after["variants"]["tam"].pop("faithfulness")
    assert after == before and view["tokens"] == list(TOKENS)
    with TestClient(make_app({"r": tmp_path / "run"}, allowed_hosts=TESTSERVER)) as client:
        served = client.get("/api/runs/r/samples/a").json()
        assert served["variants"]["tam"]["faithfulness"] == view
        assert "faithfulness" not in served["variants"]["cam"]
        assert "faithfulness" not in str(client.get("/api/runs/r/samples/b").json())


def _aucs(page) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.column[data-variant="tam"] .faith .auc')]
             .map(e => [e.dataset.curve, e.textContent]))"""
    )


def _expected(record, t: int) -> dict[str, str]:
    aucs = record.aucs()
    names = {"deletion": "tam", "insertion": "tam"}
    out = {}
    for name, values in aucs.items():
        if name.endswith("_norm"):
            continue
        label = names.get(name, name.split("_")[0])
        out[name] = f"{label} " + ("–" if np.isnan(values[t]) else f"{values[t]:.3f}")
    return out


def _visible_plots(page) -> int:
    return page.locator(".column[data-variant='tam'] .faith:not([hidden]) .faith-plot svg polyline").count()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("faith-page")
    _make_run(root / "run", records=True)
    render_run(root / "run", root / "html")
    return root


def test_the_page_draws_the_pinned_tokens_curves_with_the_stored_aucs(rendered, chromium):
    record = open_run(rendered / "run").faithfulness("a", "tam")
    page = Page(chromium, rendered / "html" / "samples" / "a.html")
    page.page.check("input[name=variant][value=cam]")  # cam has no record: its column draws none
    for t, index in enumerate(TOKENS):
        page.page.click(f"[data-answer-index='{index}']")
        page.page.mouse.move(1, 1)
        assert _aucs(page.page) == _expected(record, t)
        # the variant, random and mask curves of deletion and insertion (token 2 has no mask curve)
        assert _visible_plots(page.page) == (6 if t == 0 else 4)
    page.page.click("[data-answer-index='1']")  # no record for token 1: no plot
    page.page.mouse.move(1, 1)
    assert _visible_plots(page.page) == 0 and _aucs(page.page) == {}
    assert page.page.locator(".column[data-variant='cam'] .faith .faith-plot").count() == 0
    page.page.click("[data-answer-index='0']")
    page.page.mouse.move(1, 1)
    assert page.errors == [] and page.outside_requests() == []


def test_a_page_without_records_draws_no_curves(rendered, chromium):
    page = Page(chromium, rendered / "html" / "samples" / "b.html")
    page.page.click("[data-answer-index='0']")
    assert page.page.locator(".faith-plot").count() == 0 and page.errors == []


def test_serve_shows_the_stored_curves(rendered, chromium):
    record = open_run(rendered / "run").faithfulness("a", "tam")
    with ServerThread(make_app({"r": rendered / "run"})) as server:
        page = LivePage(chromium, f"{server.url}/?run=r&sample=a")
        page.pin(2)
        assert _aucs(page.page) == _expected(record, 1)
        assert _visible_plots(page.page) == 4
        page.pin(3)
        assert _visible_plots(page.page) == 0
        assert page.errors == [] and page.outside(server) == []
