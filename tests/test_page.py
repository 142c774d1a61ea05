"""The page's data contract (tamx.page): every key the page's scripts read is declared, and
every page data the report and the server produce has exactly the declared keys."""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tamx.pipeline.render import render_run
from tamx.pipeline.serve import make_app

from tamx import ExplainSettings, create_run, explain_sample
from tamx.page import (
    PAGE_KEYS,
    PAGE_VERSION,
    VARIANT_KEYS,
    BlockView,
    ComparisonData,
    FrameView,
    PageData,
    VariantView,
)
from tamx.report import comparison_data, empty_page_data, page_data
from tamx.synthetic import synthetic_run_info, synthetic_sample

ROOT = Path(__file__).resolve().parents[1]
REPORT_JS = ROOT / "vis_templates" / "report.js"
SERVE_JS = ROOT / "pipeline" / "serve" / "static" / "serve.js"
TESTSERVER = ("testserver",)  # the host name Starlette's TestClient sends
# Where the scripts hold page data: `data` (report.js's load and builders, serve.js's page),
# `run.data` / `from.data` (one run of a comparison), `D` (the loaded payload).
PAGE_READ = re.compile(r"(?:\b(?:run|from)\.data|(?<![\w.$])data|\bD|\]\.data)\.(\w+)")


def reads(pattern: str, text: str) -> set[str]:
    return set(re.findall(pattern, text))


def test_every_key_the_page_scripts_read_is_declared():
    report, serve = REPORT_JS.read_text(), SERVE_JS.read_text()
    page_keys = PAGE_KEYS | set(ComparisonData.__annotations__)
    read = reads(PAGE_READ.pattern, report) | reads(PAGE_READ.pattern, serve)
    assert {"id", "variants", "answer_words", "frames", "blocks", "lut"} <= read  # the pattern finds reads
    assert read <= page_keys, f"report.js/serve.js read undeclared page keys: {sorted(read - page_keys)}"
    frame = reads(r"\bframe\.(\w+)", report)
    assert frame and frame <= set(FrameView.__annotations__), sorted(frame - set(FrameView.__annotations__))
    block = reads(r"\bblock\.(\w+)", report)
    assert block and block <= set(BlockView.__annotations__), sorted(block - set(BlockView.__annotations__))
    # a variant's arrays: run.array(variant, "name") and the name lists rowsOf passes to it
    lines = [line for line in report.splitlines() if ".array(" in line or "const names =" in line]
    arrays = set(re.findall(r'"(\w+)"', "\n".join(lines)))
    assert {"answer", "prompt", "candidates_scale"} <= arrays
    assert arrays <= VARIANT_KEYS, sorted(arrays - VARIANT_KEYS)


def assert_declared(data: dict) -> None:
    assert set(data) == PAGE_KEYS
    for view in data["variants"].values():
        assert VariantView.__required_keys__ <= set(view) <= VARIANT_KEYS
    for frame in data["frames"]:
        assert set(frame) == set(FrameView.__annotations__)
    for block in data["blocks"]:
        assert set(block) == set(BlockView.__annotations__)


@pytest.mark.parametrize(
    "sample, settings",
    [
        (synthetic_sample("img", grids=[(1, 4, 5)]), ExplainSettings()),
        (synthetic_sample("video", grids=[(3, 4, 4)], seed=2), ExplainSettings(candidates=False, prompt=False)),
        (synthetic_sample("multi", grids=[(1, 4, 5), (1, 3, 3)], top_k=0, seed=1), ExplainSettings()),
        (synthetic_sample("bare", grids=[(1, 3, 3)], media=False), ExplainSettings(prompt=False)),
    ],
)
def test_every_page_data_has_exactly_the_declared_keys(sample, settings):
    info = synthetic_run_info()
    maps = explain_sample(sample, settings)
    assert_declared(page_data(sample, {"tam": maps}, info))
    assert_declared(page_data(sample, {}, info, run_name="a"))
    compared = comparison_data([page_data(sample, {"tam": maps}, info, "a"), page_data(sample, {}, info, "b")])
    assert set(compared) == set(ComparisonData.__annotations__)
    for page in compared["runs"]:
        assert_declared(page)


def test_the_empty_page_has_the_declared_keys():
    assert_declared(empty_page_data("org/model"))
    assert_declared(empty_page_data(None))
    assert isinstance(PAGE_VERSION, int) and PAGE_VERSION >= 1
    assert PageData.__annotations__.keys() == PAGE_KEYS


def embedded(page: str) -> dict:
    """The page data a sample page carries."""
    return json.loads(html_lib.unescape(re.search(r'id="tamx-data">(.*?)</script>', page, re.S).group(1)))


def test_render_and_serve_give_the_same_page_data(tmp_path):
    """One producer: the data `tamx render` writes into a page is what `tamx serve` sends and embeds."""
    sample = synthetic_sample("multi", grids=[(1, 4, 5), (1, 3, 3)], seed=1)
    run = create_run(tmp_path / "a", synthetic_run_info())
    run.write_sample(sample)
    run.write_maps(sample.id, explain_sample(sample))
    run.write_maps(sample.id, explain_sample(sample, ExplainSettings(kernel_size=1)), "k1")
    render_run(tmp_path / "a", tmp_path / "report")
    rendered = embedded((tmp_path / "report" / "samples" / "multi.html").read_text())
    assert_declared(rendered)
    with TestClient(make_app({"a": tmp_path / "a"}, allowed_hosts=TESTSERVER)) as client:
        assert client.get("/api/runs/a/samples/multi").json() == rendered
        assert embedded(client.get("/?run=a&sample=multi").text) == rendered


def test_served_pages_carry_exactly_the_declared_keys(tmp_path):
    """The server's sample JSON, its page's embedded data and its empty page follow the contract."""
    sample = synthetic_sample("img", grids=[(1, 4, 5)])
    run = create_run(tmp_path / "a", synthetic_run_info())
    run.write_sample(sample)
    run.write_maps(sample.id, explain_sample(sample))
    with TestClient(make_app({"a": tmp_path / "a", "later": tmp_path / "not-yet"}, allowed_hosts=TESTSERVER)) as client:
        assert_declared(client.get("/api/runs/a/samples/img").json())
        assert client.get("/api/config").json()["page_version"] == PAGE_VERSION
        assert_declared(embedded(client.get("/").text))
    with TestClient(make_app({"later": tmp_path / "not-yet"}, allowed_hosts=TESTSERVER)) as client:
        data = embedded(client.get("/").text)
        assert_declared(data)
        assert data["id"] == ""
