"""`tamx serve` over HTTP: a live uvicorn on 127.0.0.1 (a free port) started by the tests,
every endpoint, and the hostile inputs (traversal, bad JSON, bad settings, foreign hosts and
origins, tokens, uploads, a run being written at the same time)."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from html import unescape
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import tamx.pipeline.serve.app as serve_app
import tamx.pipeline.serve.handlers as serve_handlers
from markupsafe import escape
from tamx.pipeline.explain import explain_run
from tamx.pipeline.serve import SERVE_CSP, ServeConfig, ServerThread, make_app
from tamx.pipeline.serve.model import Generator

from tamx import ExplainSettings, create_run, explain_sample, open_run
from tamx.explain import ECI_MODES
from tamx.figures import FigureStyle, save_figure, token_figure
from tamx.filters import FILTERS
from tamx.report import normalise_jointly, page_data, unpack_array
from tamx.synthetic import synthetic_run_info, synthetic_sample
from tamx.tokens import token_strings

EVIL = "</script><script>alert(1)</script>"
FIGURE_DPI = FigureStyle.dpi
K5 = ExplainSettings(eci="uniform", filter="median", kernel_size=5)


def _write_run(path: Path, samples) -> None:
    run = create_run(path, synthetic_run_info())
    for sample in samples:
        run.write_sample(sample)
        run.write_maps(sample.id, explain_sample(sample))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    evil = synthetic_sample("evil", grids=[(1, 3, 4)], n_context=3, n_answer=3, seed=3)
    evil.tokens = list(evil.tokens)
    evil.tokens[evil.answer_positions[0]] = EVIL
    _write_run(
        root / "a",
        [synthetic_sample("img", grids=[(1, 9, 13)]), synthetic_sample("video", grids=[(3, 5, 6)], seed=2), evil],
    )
    _write_run(root / "b", [synthetic_sample("img", grids=[(1, 6, 8), (1, 4, 4)], seed=1)])
    return root


@pytest.fixture(scope="module")
def server(runs):
    with ServerThread(make_app({"a": runs / "a", "b": runs / "b"})) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def files_of(path: Path) -> dict[str, int]:
    """Every file of a run with its modification time: to prove nothing was written."""
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


def raw_get(server, path: str) -> tuple[int, bytes]:
    """GET a path exactly as given (httpx would normalise '..')."""
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


# ---------------------------------------------------------------------- reading


def test_the_page_is_the_report_page_with_the_serve_script(client):
    response = client.get("/?run=a&sample=img")
    assert response.status_code == 200
    html = response.text
    assert 'id="tamx-data"' in html and 'src="/static/serve.js"' in html and 'href="/static/serve.css"' in html
    assert f'content="{SERVE_CSP}"' in unescape(html)  # the page's own CSP: this server, nothing else
    assert response.headers["content-security-policy"] == SERVE_CSP + "; frame-ancestors 'self'"
    assert response.headers["x-content-type-options"] == "nosniff"
    for name in ("serve.js", "serve.css", "compare.js"):
        assert client.get(f"/static/{name}").status_code == 200
    assert "iframe" in client.get("/compare").text


def test_config_runs_and_samples(client):
    config = client.get("/api/config").json()
    assert config["model"] is None and "rank-gaussian" in config["filters"] and config["eci_modes"][0] == "relevance"
    assert config["defaults"] == {"eci": "relevance", "filter": "rank-gaussian", "kernel_size": 3}
    runs = {r["id"]: r for r in client.get("/api/runs").json()}
    assert {k: v["samples"] for k, v in runs.items()} == {"a": 3, "b": 1}
    assert all(set(r) == {"id", "model", "samples"} for r in runs.values()), "runs are listed by name, not path"
    samples = client.get("/api/runs/a/samples").json()
    assert [s["id"] for s in samples] == ["evil", "img", "video"] and samples[1]["variants"] == ["tam"]


def test_a_sample_is_its_report_payload(client, runs):
    run = open_run(runs / "b")
    expected = page_data(run.sample("img"), {"tam": run.maps("img", "tam")}, run.info)
    assert client.get("/api/runs/b/samples/img").json() == json.loads(json.dumps(expected))


@pytest.mark.parametrize("sample_id", ["img", "video"])
def test_live_maps_are_what_explain_gives_and_nothing_is_written(client, runs, sample_id):
    before = files_of(runs / "a")
    response = client.get(
        f"/api/runs/a/samples/{sample_id}/live", params={"eci": "uniform", "filter": "median", "kernel_size": 5}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["settings"] == K5.to_json() and body["name"] == K5.variant_name()
    maps = explain_sample(open_run(runs / "a").sample(sample_id), K5)
    n = len(maps.final)
    expected, _ = normalise_jointly(maps.tam, np.concatenate([maps.text_relevance, maps.answer_relevance], axis=1))
    np.testing.assert_array_equal(unpack_array(body["view"]["answer"]), expected)
    np.testing.assert_array_equal(unpack_array(body["view"]["candidates"]), normalise_jointly(maps.candidate_maps)[0])
    assert unpack_array(body["view"]["answer"]).shape[0] == n
    assert files_of(runs / "a") == before


def test_recomputing_runs_off_the_event_loop_once_per_setting(client, monkeypatch):
    calls = []

    def slow_explain(sample, settings=None, variant=None):
        calls.append(settings)
        time.sleep(1.0)
        return explain_sample(sample, settings, variant)

    monkeypatch.setattr(serve_handlers, "explain_sample", slow_explain)
    params = {"kernel_size": 7, "filter": "gaussian"}
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                httpx.get(f"{client.base_url}/api/runs/a/samples/img/live", params=params, timeout=30)
            )
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    started = time.perf_counter()
    assert client.get("/api/runs").status_code == 200
    assert time.perf_counter() - started < 0.5, "a recompute blocked another client"
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200] * 4 and len({r.content for r in results}) == 1
    assert len(calls) == 1  # four identical requests in flight shared one computation
    assert client.get("/api/runs/a/samples/img/live", params=params).content == results[0].content
    assert len(calls) == 1  # and the next one came from the cache


def decode_png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def core_figure(sample, maps, index: int) -> np.ndarray:
    """The token figure `tamx render --png` draws, as BGR pixels."""
    buffer = io.BytesIO()
    save_figure(token_figure(sample, maps, index, FigureStyle(dpi=FIGURE_DPI)), buffer, "png", FIGURE_DPI)
    return decode_png(buffer.getvalue())


def test_a_figure_is_the_cores_figure(client, runs):
    run = open_run(runs / "a")
    sample = run.sample("img")
    stored = client.get("/api/runs/a/samples/img/figure.png", params={"variant": "tam", "index": 2})
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/png"
    assert stored.headers["content-disposition"] == 'attachment; filename="img-tam-token002.png"'
    np.testing.assert_array_equal(decode_png(stored.content), core_figure(sample, run.maps("img", "tam"), 2))
    live = client.get(
        "/api/runs/a/samples/img/figure.png",
        params={"eci": "uniform", "filter": "median", "kernel_size": 5, "index": 4},
    )
    assert live.status_code == 200
    np.testing.assert_array_equal(decode_png(live.content), core_figure(sample, explain_sample(sample, K5), 4))


# ---------------------------------------------------------------------- writing


def test_saving_a_setting_stores_it_as_tamx_explain_would(client, runs, tmp_path):
    response = client.post(
        "/api/runs/b/variants", json={"eci": "uniform", "filter": "median", "kernel_size": 5, "name": "k5"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"variant": "k5", "done": ["img"], "skipped": [], "failed": {}}
    # the same through the explain stage, into a copy of the run made before: identical maps
    copy = tmp_path / "b"
    _write_run(copy, [synthetic_sample("img", grids=[(1, 6, 8), (1, 4, 4)], seed=1)])
    explain_run(copy, K5, "k5")
    saved, reference = open_run(runs / "b").maps("img", "k5"), open_run(copy).maps("img", "k5")
    assert saved.settings == reference.settings
    for name, value in reference.arrays().items():
        np.testing.assert_array_equal(saved.arrays()[name], value)
    # saving again is skipped; other settings under a stored name are refused and change nothing
    again = client.post(
        "/api/runs/b/variants", json={"eci": "uniform", "filter": "median", "kernel_size": 5, "name": "k5"}
    )
    assert again.json()["skipped"] == ["img"]
    before = files_of(runs / "b")
    clash = client.post("/api/runs/b/variants", json={"kernel_size": 7, "name": "k5", "samples": ["img"]})
    assert clash.status_code == 409 and "--overwrite" in clash.json()["failed"]["img"]
    assert files_of(runs / "b") == before
    assert "k5" in [s for s in client.get("/api/runs/b/samples").json()[0]["variants"]]


# ---------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/api/runs/nope/samples", 404, "no run named 'nope'"),
        ("/api/runs/a/samples/nope", 404, "has no sample 'nope'"),
        ("/api/runs/a/samples/.hidden", 400, "sample ids use"),
        ("/api/runs/a/samples/img/live?kernel_size=4", 400, "odd"),
        ("/api/runs/a/samples/img/live?kernel_size=abc", 400, "kernel_size must be"),
        ("/api/runs/a/samples/img/live?kernel_size=1e999", 400, "kernel_size must be"),
        ("/api/runs/a/samples/img/live?kernel_size=" + "9" * 5000, 400, "(5000 digits) is out of range"),
        ("/api/runs/a/samples/img/figure.png?kernel_size=99999999999999999999", 400, "is out of range"),
        ("/api/runs/a/samples/img/live?filter=sharpen", 400, "sharpen"),
        ("/api/runs/a/samples/img/live?eci=maybe", 400, "maybe"),
        ("/api/runs/a/samples/img/live?kernel_size=101", 400, "wider than every vision grid"),
        ("/api/runs/a/samples/img/figure.png?kernel_size=15", 400, "up to 13"),
        ("/api/runs/a/samples/img/figure.png?variant=tam&index=99", 400, "answer tokens 0..19"),
        ("/api/runs/a/samples/img/figure.png?variant=nope", 404, "no stored variant"),
        ("/api/runs/a/samples/img/figure.png?index=x", 400, "index must be"),
        ("/api/jobs/abc", 404, "no model"),
        ("/nowhere", 404, "no page or API route"),
    ],
)
def test_bad_requests_get_clear_errors(client, path, status, says):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert says in response.json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/a/samples/..%2F..%2Fzarr.json",
        "/api/runs/a/samples/../../../etc/passwd",
        "/api/runs/..%2Fa/samples",
        "/static/../app.py",
        "/static/..%2Fapp.py",
        "/static/%2e%2e/model.py",
        "/api/runs/a/samples/img%00/live",
    ],
)
def test_path_traversal_reads_nothing(server, path):
    status, body = raw_get(server, path)
    assert status in (400, 404), (status, body[:200])
    assert b"import" not in body and b"root:" not in body and b"schema_version" not in body


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"kernel_size": "big"}', "kernel_size must be"),
        (b'{"name": "../../escape"}', "variant names follow"),
        (b'{"name": "live"}', "other than 'live'"),
        (b'{"samples": "img"}', "list of sample ids"),
        (b'{"samples": ["../x"]}', "sample ids use"),
        (b'{"samples": ["ghost"]}', "has no sample 'ghost'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_saves_are_refused_and_write_nothing(client, runs, body, says):
    before = files_of(runs / "a")
    response = client.post("/api/runs/a/variants", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 404) and says in response.json()["message"]
    assert files_of(runs / "a") == before
    assert not (runs / "escape").exists()


@pytest.fixture
def app_client(runs):
    """The app in-process: an exception that escapes a route fails the test instead of being a 500."""
    from starlette.testclient import TestClient

    app = make_app({"a": runs / "a", "b": runs / "b"})
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=True) as c:
        yield c


def _nested(depth: int) -> bytes:
    return b'{"samples": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"kernel_size": 1e999}', "out of range (not a finite float)"),
        (b'{"kernel_size": -1e999}', "out of range (not a finite float)"),
        (b'{"kernel_size": NaN}', "numbers are finite"),
        (b'{"kernel_size": Infinity}', "numbers are finite"),
        (b'{"kernel_size": 5.5}', "kernel_size must be an odd integer"),
        (b'{"kernel_size": 5.0}', "kernel_size must be an odd integer"),
        (b'{"kernel_size": true}', "kernel_size must be an odd integer"),
        (b'{"kernel_size": 99999999999999999999999}', "is out of range"),
        (b'{"kernel_size": 1' + b"0" * 5000 + b"}", "(5001 digits) is out of range"),
        (b'{"name": "x", "junk": 1e400}', "not a finite float"),
        (_nested(20_000), "nests deeper than this API takes"),
        (_nested(2), "nests deeper"),
        (b'{"a": {"b": {"c": {}}}}', "nests deeper"),
    ],
)
def test_out_of_range_numbers_and_deep_nesting_are_a_400(app_client, runs, body, says):
    before = files_of(runs / "a")
    response = app_client.post("/api/runs/a/variants", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert says in response.json()["message"] and "Traceback" not in response.text
    assert files_of(runs / "a") == before


def test_brackets_inside_strings_are_not_nesting(app_client):
    response = app_client.post("/api/runs/a/variants", json={"name": "[[[[{{{{", "samples": ["img"]})
    assert response.status_code == 400 and "variant names follow" in response.json()["message"]


def test_a_body_over_the_limit_is_a_413_and_writes_nothing(app_client, runs):
    before = files_of(runs / "a")
    huge = b'{"samples": [' + b'"img",' * (80 << 20 >> 6) * 10 + b'"img"]}'  # about 80 MB
    response = app_client.post("/api/runs/a/variants", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "the most this endpoint takes" in response.json()["message"]

    def chunks():  # no Content-Length: the limit holds while reading
        yield b'{"samples": ['
        for _ in range(1000):
            yield b'"img",' * 1000
        yield b'"img"]}'

    streamed = app_client.post("/api/runs/a/variants", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert files_of(runs / "a") == before


def test_a_save_naming_every_sample_fits_the_limit(runs, tmp_path):
    import shutil

    from starlette.testclient import TestClient

    shutil.copytree(runs / "a", tmp_path / "a")  # the module's runs stay as they are
    ids = open_run(tmp_path / "a").sample_ids()
    with TestClient(make_app({"a": tmp_path / "a"}), base_url="http://127.0.0.1") as c:
        response = c.post("/api/runs/a/variants", json={"name": "every", "kernel_size": 1, "samples": ids})
    assert response.status_code == 200 and sorted(response.json()["done"]) == sorted(ids)


def test_page_data_with_nan_and_lone_surrogates_is_served_as_valid_json(tmp_path):
    from starlette.testclient import TestClient

    sample = synthetic_sample("odd", grids=[(1, 3, 4)], n_context=3, n_answer=3, seed=3)
    sample.tokens = list(sample.tokens)
    sample.tokens[sample.answer_positions[0]] = "\udc80half"
    sample.candidate_logprobs = np.full_like(sample.candidate_logprobs, np.nan)
    _write_run(tmp_path / "odd", [sample])
    with TestClient(make_app({"odd": tmp_path / "odd"}), base_url="http://127.0.0.1") as c:
        for path in ("/api/runs/odd/samples/odd", "/api/runs/odd/samples/odd/live?kernel_size=1"):
            response = c.get(path)
            assert response.status_code == 200, response.text
            data = json.loads(response.content.decode("utf-8"), parse_constant=_no_constant)
        page = c.get("/?run=odd&sample=odd")
        assert page.status_code == 200 and "NaN" not in page.text
    assert data["view"]["answer"]["shape"] == [3, 12]


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_foreign_hosts_origins_and_methods_are_refused(client):
    assert client.get("/api/runs", headers={"host": "attacker.example"}).status_code == 400
    foreign = client.post("/api/runs/a/variants", json={"name": "x"}, headers={"origin": "http://attacker.example"})
    assert foreign.status_code == 403 and "own page" in foreign.json()["message"]
    assert client.delete("/api/runs").status_code == 405
    assert client.post("/api/generate", files={"files": ("a.png", b"x")}).status_code == 404


def test_model_and_file_strings_are_escaped(client):
    html = client.get("/?run=a&sample=evil").text
    assert EVIL not in html and "<script>alert(1)" not in html
    data = client.get("/api/runs/a/samples/evil").json()
    assert any(text == EVIL for segment in data["segments"] for text, _ in segment.get("tokens", []))


def test_a_run_written_by_explain_meanwhile_gives_200_or_409_and_stays_intact(client, runs):
    stop = threading.Event()
    errors = []

    def rewrite():
        k = 0
        while not stop.is_set():
            k += 1
            report = explain_run(runs / "a", ExplainSettings(kernel_size=2 * (k % 3) + 1), "churn", overwrite=True)
            errors.extend(report.failed.values())

    writer = threading.Thread(target=rewrite)
    writer.start()
    statuses = []
    try:
        deadline = time.perf_counter() + 3
        k = 0
        while time.perf_counter() < deadline:
            k += 1
            for path in (
                "/api/runs/a/samples/video",
                "/api/runs/a/samples",
                # a new setting each time (kernels that fit the 9 x 13 grid): recomputed, not cached
                "/api/runs/a/samples/img/live?"
                f"eci={ECI_MODES[k % 3]}&filter={list(FILTERS)[k // 3 % 4]}&kernel_size={2 * (k // 12 % 7) + 1}",
            ):
                response = client.get(path)
                statuses.append(response.status_code)
                if response.status_code != 200:
                    assert response.status_code == 409 and "retry" in response.json()["message"], response.text
    finally:
        stop.set()
        writer.join()
    assert errors == [] and statuses.count(200) > 0
    run = open_run(runs / "a")
    for sample_id in run.sample_ids():
        run.sample(sample_id)
        assert run.maps(sample_id, "churn").settings["kernel_size"] in (1, 3, 5)
        run.maps(sample_id, "tam")


# ---------------------------------------------------------------------- the list page


def test_the_list_page_shows_every_run_and_sample_with_answers_and_thumbnails(client, runs):
    page = client.get("/samples")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    rows = re.findall(r'<tr class="entry">(.*?)</tr>', text, re.S)
    links = re.findall(
        r'<div class="role entry-run">run (\w+)</div><a href="([^"]+)" class="sample-link">([^<]+)</a>', text
    )
    listed = [(name, sample_id) for name in ("a", "b") for sample_id in open_run(runs / name).sample_ids()]
    assert len(listed) == 4
    assert [(run, unescape(href), sample) for run, href, sample in links] == [
        (name, f"/?run={name}&sample={sample_id}", sample_id) for name, sample_id in listed
    ]
    assert len(rows) == 4 and all('<td class="map"><img src="data:image/jpeg;base64,' in row for row in rows)
    for row, (name, sample_id) in zip(rows, listed):
        sample = open_run(runs / name).sample(sample_id)
        answer = "".join(token_strings(sample)[p] for p in sample.answer_positions.tolist()).strip()
        assert str(escape(answer)) in row  # the model's answer, as text
    assert EVIL not in text and str(escape(EVIL)) in text
    assert 'id="filter"' in text and "a: synthetic, 3 sample(s) · b: synthetic, 1 sample(s)" in text
    # every sample page leads back to it
    assert 'href="/samples" id="to-index"' in client.get("/?run=b&sample=img").text


def test_the_list_page_of_a_server_without_runs_says_so(tmp_path):
    with ServerThread(make_app({"later": tmp_path / "not-yet"})) as server:
        page = httpx.get(server.url + "/samples", timeout=30)
    assert page.status_code == 200 and "No runs yet." in page.text and '<tr class="entry">' not in page.text


def test_the_list_page_needs_the_token_too(runs):
    with ServerThread(make_app(ServeConfig({"a": runs / "a"}, token="s3cret"))) as server:
        assert httpx.get(server.url + "/samples", timeout=30).status_code == 401
        assert httpx.get(server.url + "/samples?token=s3cret", timeout=30).status_code == 200


# ---------------------------------------------------------------------- token


def test_a_token_is_needed_on_every_request_when_set(runs):
    app = make_app(ServeConfig({"a": runs / "a"}, token="s3cret"))
    with ServerThread(app) as server:
        assert httpx.get(server.url + "/api/runs").status_code == 401
        assert httpx.get(server.url + "/api/runs?token=wrong").status_code == 401
        assert httpx.get(server.url + "/api/runs", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(server.url + "/api/runs", headers={"cookie": "tamx_token=x; broken"}).status_code == 401
        assert httpx.get(server.url + "/api/runs", params={"token": "s3crét"}).status_code == 401
        with httpx.Client(base_url=server.url) as browser:
            first = browser.get("/?token=s3cret")
            assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
            assert browser.get("/api/runs").status_code == 200  # the cookie carries it on


# ---------------------------------------------------------------------- uploads (validation: no model needed)


@pytest.fixture
def upload_server(tmp_path):
    generator = Generator(model=None, processor=None, model_id="none", out=tmp_path / "out" / "run")
    config = ServeConfig({}, generator=generator, max_upload_bytes=200_000)
    with ServerThread(make_app(config)) as running:
        yield running, tmp_path
    generator.close()


def png(size: int = 32) -> bytes:
    return cv2.imencode(".png", np.full((size, size, 3), 120, np.uint8))[1].tobytes()


def avi(folder: Path) -> bytes:
    """A 3-frame MJPG video."""
    path = folder / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 4.0, (32, 24))
    for k in range(3):
        writer.write(np.full((24, 32, 3), 60 * k, np.uint8))
    writer.release()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("files", "data", "status", "says"),
    [
        ([("files", ("a.png", b"\x00" * 300_000, "image/png"))], {"prompt": "hi"}, 413, "at most 0.2 MB"),
        ([("files", ("a.png", b"MZ\x90\x00 not an image", "image/png"))], {"prompt": "hi"}, 415, "neither an image"),
        ([("files", ("a.png", b"", "image/png"))], {"prompt": "hi"}, 400, "is empty"),
        ([("files", ("a.png", png(), "image/png"))], {"prompt": "  "}, 400, "type a prompt"),
        ([], {"prompt": "hi"}, 400, "upload one or more images"),
        ([("files", ("a.png", png(), "image/png"))], {"prompt": "hi", "id": "../x"}, 400, "sample id"),
        (
            [("files", ("a.mp4", b"\x00\x00\x00\x18ftypmp42 and then no video at all", "video/mp4"))],
            {"prompt": "hi"},
            415,
            "cannot decode a frame",
        ),
        ("two videos", {"prompt": "hi"}, 400, "at most one video"),
    ],
)
def test_bad_uploads_are_refused(upload_server, files, data, status, says, tmp_path):
    server, root = upload_server
    if files == "two videos":
        files = [("files", (f"v{k}.avi", avi(tmp_path), "video/x-msvideo")) for k in range(2)]
    response = httpx.post(server.url + "/api/generate", files=files or None, data=data)
    assert response.status_code == status, response.text
    assert says in response.json()["message"]
    assert not (root / "out").exists()


def test_an_upload_without_its_length_is_refused(upload_server):
    server, _ = upload_server
    response = httpx.post(server.url + "/api/generate", content=iter([b"--x\r\n", b"\x00" * 1000]))
    assert response.status_code == 411 and "Content-Length" in response.json()["message"]


def test_upload_file_names_are_never_paths(upload_server):
    server, root = upload_server
    response = httpx.post(
        server.url + "/api/generate",
        files=[("files", ("../../../escape.png", png(), "image/png"))],
        data={"prompt": "What is it?", "id": "named"},
    )
    assert response.status_code == 202
    job = response.json()
    assert job["sample"] == "named" and job["state"] in ("queued", "running", "failed")
    for _ in range(100):
        job = httpx.get(f"{server.url}/api/jobs/{job['id']}").json()
        if job["state"] == "failed":
            break
        time.sleep(0.05)
    assert job["state"] == "failed"  # no model here: the job ends and says why
    assert sorted(p.name for p in (root / "out" / "run-uploads" / "named").iterdir()) == ["image-0.png"]
    assert not list(root.rglob("escape.png"))


def test_images_and_a_video_are_taken_together(upload_server, tmp_path):
    server, root = upload_server
    files = [("files", ("a.png", png(), "image/png")), ("files", ("clip.avi", avi(tmp_path), "video/x-msvideo"))]
    response = httpx.post(server.url + "/api/generate", files=files, data={"prompt": "What moves?", "id": "mixed"})
    assert response.status_code == 202, response.text
    folder = root / "out" / "run-uploads" / "mixed"
    for _ in range(100):
        if folder.is_dir() and len(list(folder.iterdir())) == 2:
            break
        time.sleep(0.05)
    assert sorted(p.name for p in folder.iterdir()) == ["image-0.png", "video.avi"]


# ---------------------------------------------------------------------- the command line


def test_the_command_serves_until_stopped(runs):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-m", "tamx.pipeline", "serve", str(runs / "a"), "--port", "0", "--token", "t0k"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stderr.readline()
        assert "open http://127.0.0.1:" in line and line.strip().endswith("/?token=t0k"), line
        url = line.split("open ", 1)[1].strip()
        assert httpx.get(url, timeout=30).status_code == 200
        assert httpx.get(url.split("?")[0] + "api/runs", timeout=30).status_code == 401
    finally:
        process.terminate()
        process.wait(20)


def test_another_host_gets_a_token_and_no_host_check(runs, monkeypatch):
    from click.testing import CliRunner
    from tamx.pipeline.cli import main

    started = []
    monkeypatch.setattr(serve_app, "serve_forever", lambda config, host, port, echo: started.append((config, host)))
    result = CliRunner().invoke(main, ["serve", str(runs / "a"), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    ((config, host),) = started
    assert host == "0.0.0.0" and len(config.token) >= 24 and config.allowed_hosts == ()
    assert list(config.runs) == ["a"]


def test_the_command_needs_runs_or_a_model(runs):
    from click.testing import CliRunner
    from tamx.pipeline.cli import main

    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 2 and "--model" in result.output
    result = CliRunner().invoke(main, ["serve", str(runs / "a"), "--out", str(runs / "new")])
    assert result.exit_code == 2 and "needs --model" in result.output


def test_serving_runs_imports_no_torch(runs):
    code = (
        "import sys; from tamx.pipeline.serve import make_app; import tamx.pipeline.serve.model; "
        f"make_app({{'a': {str(runs / 'a')!r}}}); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
