"""`tamx serve --model` on the bundled toy VLM (CPU): upload an image in the page, generate,
see the new sample in the list with its maps; generations wait in line one at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import pytest

pytest.importorskip("transformers")

from tamx.pipeline.demo import DEMO_MODEL
from tamx.pipeline.demo.run import MODEL_DIR
from tamx.pipeline.encode import EncodeSettings
from tamx.pipeline.serve import ServeConfig, ServerThread, make_app
from tamx.pipeline.serve.model import Generator

from tamx import open_run
from tamx.shapes import PROMPT, scenes

from .test_serve_browser import LivePage

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (MODEL_DIR / "config.json").is_file(), reason="the bundled demo model is not built"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-model")
    images = []
    for k, scene in enumerate(scenes(7, 3)):
        path = root / f"scene-{k}.png"
        cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        images.append(path)
    generator = Generator.load(
        str(MODEL_DIR), root / "out" / "run", device="cpu", dtype="fp32", settings=EncodeSettings(max_new_tokens=8)
    )
    with ServerThread(make_app(ServeConfig({}, generator=generator))) as server:
        server.root, server.images, server.generator = root, images, generator
        yield server
    generator.close()


def wait_done(server, job: dict) -> dict:
    for _ in range(600):
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
        job = httpx.get(f"{server.url}/api/jobs/{job['id']}").json()
    raise AssertionError(f"job {job} did not finish")


def test_generations_wait_in_line_one_at_a_time(served):
    jobs = []
    for k, path in enumerate(served.images[:2]):
        response = httpx.post(
            served.url + "/api/generate",
            files=[("files", (path.name, path.read_bytes(), "image/png"))],
            data={"prompt": PROMPT, "id": f"line-{k}"},
        )
        assert response.status_code == 202, response.text
        jobs.append(response.json())
    assert jobs[1]["state"] == "queued" and jobs[1]["ahead"] == 1
    busy = httpx.post(
        served.url + "/api/generate",
        files=[("files", ("x.png", served.images[0].read_bytes(), "image/png"))],
        data={"prompt": PROMPT, "id": "line-1"},
    )
    assert busy.status_code == 409 and "in line" in busy.json()["message"]
    done = [wait_done(served, job) for job in jobs]
    assert [j["state"] for j in done] == ["done", "done"], done
    run = open_run(served.root / "out" / "run")
    assert {"line-0", "line-1"} <= set(run.sample_ids())
    assert run.variants("line-0") == ["tam"] and run.sample("line-0").meta["answer"]
    forced = httpx.post(
        served.url + "/api/generate",
        files=[("files", ("x.png", served.images[2].read_bytes(), "image/png"))],
        data={"prompt": PROMPT, "answer": "a red circle", "id": "forced"},
    )
    assert wait_done(served, forced.json())["state"] == "done"
    sample = open_run(served.root / "out" / "run").sample("forced")
    assert "".join(sample.tokens[p] for p in sample.answer_positions).strip().startswith("a red circle")


def test_upload_in_the_page_generates_and_shows_the_new_sample(served, chromium):
    page = LivePage(chromium, served.url + "/")
    assert "generate with" in page.page.inner_text("#serve-generate")
    page.page.set_input_files("#serve-files", str(served.images[2]))
    page.page.fill("#serve-prompt", PROMPT)
    page.page.fill("#serve-id", "from-page")
    # record what the page shows while it waits; two generations are already in line before it
    page.page.evaluate(
        """() => { window.seen = []; new MutationObserver(() => window.seen.push(document.body.dataset.job + '|' +
             document.getElementById('serve-queue').textContent)).observe(document.body, {attributes: true}); }"""
    )
    # the two generations ahead wait until the page has shown its place in line (no race with a fast model)
    gate, run_job = threading.Event(), served.generator._run

    def gated(job):
        if job.upload.sample_id.startswith("ahead-"):
            gate.wait(60)
        run_job(job)

    served.generator._run = gated
    for k in range(2):
        image = served.images[k]
        ahead = httpx.post(
            served.url + "/api/generate",
            files=[("files", (image.name, image.read_bytes(), "image/png"))],
            data={"prompt": PROMPT, "id": f"ahead-{k}"},
        )
        assert ahead.status_code == 202
    try:
        page.page.click("#serve-generate")
        page.page.wait_for_selector("body[data-job^='queued:']", timeout=60_000)
    finally:
        gate.set()
        served.generator._run = run_job
    page.page.wait_for_selector("body[data-job='done'][data-serve-sample='run/from-page']", timeout=120_000)
    seen = page.page.evaluate("window.seen")
    assert any(s.startswith(("queued:2|in line: 2", "queued:1|in line: 1")) for s in seen), seen
    options = page.page.locator("#serve-sample option").all_inner_texts()
    assert any(o.startswith("from-page") for o in options)
    page.page.click("[data-answer-index='0']")
    assert page.page.get_attribute("body", "data-painted") == "answer:0:-1:tam"
    assert page.page.locator("#media .frame canvas[data-variant='tam']").count() == 1
    assert page.errors == [] and page.outside(served) == []


def test_the_command_loads_the_model_and_serves_its_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = tmp_path / "live"
    command = [
        sys.executable,
        "-m",
        "tamx.pipeline",
        "serve",
        "--model",
        str(MODEL_DIR),
        "--out",
        str(out),
        "--port",
        "0",
    ]
    command += ["--device", "cpu", "--dtype", "fp32"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = [process.stderr.readline()]
        while "open http" not in lines[-1] and lines[-1] and len(lines) < 100:  # loaders may log lines too
            lines.append(process.stderr.readline())
        assert lines[0].startswith("loading ") and "and a model" in lines[-1], lines
        url = lines[-1].split("open ", 1)[1].strip()
        config = httpx.get(url + "api/config", timeout=30).json()
        # the bundled folder is named as `tamx demo` names it, not by its path
        assert config["model"]["id"] == DEMO_MODEL and config["model"]["run"] == "live"
        empty = httpx.get(url, timeout=30)  # the empty page, until a first generation
        assert empty.status_code == 200 and DEMO_MODEL in empty.text
        assert str(MODEL_DIR.resolve()) not in empty.text, "a page shows the model folder's name, not its path"
    finally:
        process.terminate()
        process.wait(30)
