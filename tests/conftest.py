"""Shared fixtures: synthetic runs written through the public store API, and tiny models of
real VLM families saved to folders once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tamx import create_run

# No test talks to the Hugging Face hub: a model id that is no folder is refused offline at once
# (a test that needs the online path sets its own endpoint on 127.0.0.1 and clears this).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .refusals import tamx_cli

LAYOUTS = {
    "img": [(1, 9, 13)],
    "multi": [(1, 6, 8), (1, 4, 4)],
    "video": [(3, 5, 6)],
}


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative path, with its bytes: proof that a command left a
    folder as it was, or wrote the same files as another."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run_path(tmp_path):
    """A run with three bf16 samples (one image, two images, a video), not yet explained."""
    path = tmp_path / "run"
    run = create_run(path, synthetic_run_info(dtype="bfloat16"))
    for seed, (name, grids) in enumerate(LAYOUTS.items()):
        run.write_sample(synthetic_sample(name, grids=grids, dtype="bfloat16", seed=seed, bias=seed == 1))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A function: family name -> folder of a saved tiny model of that family (built once)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("PIL", reason="transformers' image processors need Pillow (pip install pillow)")
    from .tiny_models import BUILDERS

    built = {}

    def get(family: str):
        if family not in built:
            built[family] = BUILDERS[family](tmp_path_factory.mktemp(family))
        return built[family]

    return get


CHROMIUM_MISSING = (
    "the browser tests are skipped: Debian's chromium is not at /usr/bin/chromium "
    "(install it with `apt-get update && apt-get install -y chromium`)"
)


CJK_FONT_MISSING = (
    "the CJK figure-text test is skipped: no CJK font is installed "
    "(install one with `apt-get update && apt-get install -y fonts-wqy-microhei`)"
)


def pytest_terminal_summary(terminalreporter):
    """Say once, at the end, why the browser tests or the CJK figure test did not run, and how
    to make them run."""
    if not Path("/usr/bin/chromium").exists():
        terminalreporter.write_line(CHROMIUM_MISSING, yellow=True)
    skipped = terminalreporter.stats.get("skipped", [])
    if any(CJK_FONT_MISSING in str(getattr(report, "longrepr", "")) for report in skipped):
        terminalreporter.write_line(CJK_FONT_MISSING, yellow=True)


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium driven by Playwright for the report's and `tamx serve`'s browser tests
    (in CI it must be there, never skipped). Per module: one Playwright at a time."""
    from .test_browser import ARGS, CHROMIUM, playwright_api

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (apt-get install chromium)")
        pytest.skip(CHROMIUM_MISSING)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def eval_case(tmp_path):
    """A run of two one-image samples explained as `cam`, and a folder dataset with their masks
    (test_eval_inputs, test_disk_full)."""
    import cv2

    run_path = tmp_path / "run"
    run = create_run(run_path, synthetic_run_info())
    data = tmp_path / "data"
    data.mkdir()
    entries = []
    for seed, name in enumerate(("first", "second")):
        run.write_sample(synthetic_sample(name, grids=[(1, 6, 8)], seed=seed))
        cv2.imwrite(str(data / f"{name}.jpg"), np.zeros((48, 64, 3), np.uint8))
        label = np.zeros((48, 64), np.uint8)
        label[10:30, 20:40] = 1
        cv2.imwrite(str(data / f"{name}.png"), label)
        entries.append({"id": name, "image": f"{name}.jpg", "label": f"{name}.png", "categories": {"dog": 1}})
    (data / "anno.json").write_text(json.dumps(entries))
    assert tamx_cli("explain", run_path, "--no-eci", "--filter", "none", "--quiet").exit_code == 0
    return run_path, data, entries


@pytest.fixture(scope="session")
def s3():
    """The environment of an S3 endpoint on 127.0.0.1 (moto's server, started here) with one bucket,
    "runs". One per session: moto keeps its buckets per process, so a second server would see them."""
    moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (pip install -e '.[test]')")
    s3fs = pytest.importorskip("s3fs", reason="the S3 tests need s3fs (pip install -e '.[test]')")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        s3fs.S3FileSystem(skip_instance_cache=True).mkdir("runs")
        yield env
    server.stop()
