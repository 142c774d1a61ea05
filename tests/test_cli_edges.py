"""What a researcher sees at the edges of the command line: exit codes, one-line messages,
clean stderr when piped, fast refusals, no leftovers (issue 24)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main

from tamx import open_run

from .conftest import CJK_FONT_MISSING

REPO = Path(__file__).resolve().parents[1]


def tamx_cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def test_piped_explain_and_render_leave_no_bare_progress_label(run_path, tmp_path):
    explained = tamx_cli("explain", run_path)  # CliRunner's stderr is not a terminal, as in a pipe
    assert explained.exit_code == 0, explained.output
    assert "explain" not in explained.stderr.splitlines()
    assert "variant 'tam': 3 sample(s) explained" in explained.stderr
    rendered = tamx_cli("render", run_path, "--out", tmp_path / "report")
    assert rendered.exit_code == 0, rendered.output
    assert "render" not in rendered.stderr.splitlines() and rendered.stderr.strip() == ""


def test_an_even_kernel_size_is_a_bad_option(run_path):
    result = tamx_cli("explain", run_path, "--kernel-size", "4")
    assert result.exit_code == 2
    assert "kernel size must be odd and >= 1 (1, 3, 5, ...), got 4" in result.stderr
    assert "Traceback" not in result.output and not open_run(run_path).variants("img")


def test_a_variant_stored_with_other_settings_is_refused_once_before_any_sample(run_path):
    assert tamx_cli("explain", run_path, "--quiet").exit_code == 0
    result = tamx_cli("explain", run_path, "--kernel-size", "5", "--variant", "tam")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert result.stderr.count("stored with other settings") == 1  # once, not per sample
    assert "kernel_size=3" in line and "kernel_size=5" in line  # the stored and the asked settings
    assert "in 3 sample(s) ('img', 'multi', 'video')" in line and "--overwrite" in line and "--variant" in line
    assert "failed" not in result.stderr
    assert all(open_run(run_path).maps_settings(s, "tam")["kernel_size"] == 3 for s in ("img", "multi", "video"))


def test_render_refuses_a_variant_that_no_sample_has(run_path, tmp_path):
    assert tamx_cli("explain", run_path, "--quiet").exit_code == 0
    out = tmp_path / "report"
    result = tamx_cli("render", run_path, "--out", out, "--variants", "tam,nope")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "'nope'" in line and "stored: tam" in line and "--variants" in line
    assert not (out / "index.html").exists()
    assert tamx_cli("render", run_path, "--out", out, "--variants", "tam").exit_code == 0


OFFLINE = {"HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize(
    ("model", "expected", "near_miss"),
    [
        ("tamx-dem", "nor in the Hugging Face cache, and the hub is offline (HF_HUB_OFFLINE)", True),
        ("tamxdemo", "nor in the Hugging Face cache, and the hub is offline (HF_HUB_OFFLINE)", True),
        ("nobody-here/no-such-vlm", "nor in the Hugging Face cache, and the hub is offline", False),
        ("./no/such/folder", "nor a Hugging Face model id (owner/name)", False),
    ],
)
def test_a_model_that_is_no_folder_and_not_cached_is_refused_offline_at_once(tmp_path, model, expected, near_miss):
    image = tmp_path / "a.png"
    result = tamx_cli(
        "encode", "--model", model, "--image", image, "--prompt", "x", "--out", tmp_path / "run", env=OFFLINE
    )
    assert result.exit_code == 2, result.output
    assert f"model {model!r} is not a local folder" in result.stderr and expected in result.stderr
    assert ("did you mean tamx-demo?" in result.stderr) is near_miss
    (line,) = error_lines(result)
    assert "Retrying" not in result.output and ".." not in line.replace("'./no", "'")
    assert not (tmp_path / "run").exists()


def test_demo_and_serve_check_their_model_option_the_same_way(tmp_path):
    demo = tamx_cli("demo", "--out", tmp_path / "demo", "--model", "tamx-dem", env=OFFLINE)
    assert demo.exit_code == 2 and "did you mean tamx-demo?" in demo.stderr
    assert not (tmp_path / "demo").exists()
    serve = tamx_cli("serve", "--model", "tamx-dem", env=OFFLINE)
    assert serve.exit_code == 2 and "did you mean tamx-demo?" in serve.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_hub_is_asked_once_without_retries(tmp_path):
    """Online, a model that is not cached is looked up once; a hub that cannot be reached (here a
    closed port on this machine) is one line, with no retry warnings."""
    env = {"HF_HUB_OFFLINE": None, "TRANSFORMERS_OFFLINE": None, "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    args = ["--image", tmp_path / "a.png", "--prompt", "x", "--out", tmp_path / "r"]
    result = tamx_cli("encode", "--model", "tamx-dem", *args, env=env)
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result)
    assert "the hub cannot be reached" in line and "did you mean tamx-demo?" in line
    assert "Retrying" not in result.output and not (tmp_path / "r").exists()


def test_the_default_sample_id_is_the_first_file_name_made_a_valid_id():
    from tamx.pipeline.encode.inputs import default_sample_id, inline_input

    from tamx.records import name_problem

    assert default_sample_id(("photos/cat.jpg", "dog.png")) == "cat"
    assert default_sample_id((), "clips/a walk (2).mp4") == "a-walk-2"
    assert default_sample_id(("my photo 1.jpg",)) == "my-photo-1"
    assert default_sample_id(("ünïcode.png",)) == "n-code"
    for unusable in (".hidden.png", "con.png", "---.png", "日本.png"):
        assert default_sample_id((unusable,)) in ("hidden", "sample")
        assert name_problem(default_sample_id((unusable,)), portable=True) is None
    assert default_sample_id(()) == "sample"
    assert inline_input(("x/photo.jpg",), prompt="p").id == "photo"
    assert inline_input(("x/photo.jpg",), prompt="p", sample_id="mine").id == "mine"


def test_demo_refuses_an_earlier_demo_at_once_without_loading_the_model(tmp_path):
    (tmp_path / "demo" / "run").mkdir(parents=True)
    script = (
        "import sys; from click.testing import CliRunner; from tamx.pipeline.cli import main; "
        f"r = CliRunner().invoke(main, ['demo', '--out', {str(tmp_path / 'demo')!r}]); "
        "print(r.exit_code); print(r.stderr, end=''); print('torch loaded' if 'torch' in sys.modules else 'no torch')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    code, *lines = done.stdout.splitlines()
    assert code == "1", done.stdout + done.stderr
    assert lines[-1] == "no torch"
    (message,) = lines[:-1]  # one line: no notice, no loading
    assert message.startswith("Error: ") and "exists; give another --out, or --overwrite" in message


def test_a_run_shows_its_location_model_and_mode(run_path):
    run = open_run(run_path)
    shown = repr(run)
    assert shown.startswith("<tamx.Run ") and repr(str(run_path)) in shown
    assert f"model={run.info.model_id!r}" in shown
    assert "schema=2." in shown and "mode='r'" in shown
    assert "mode='a'" in repr(open_run(run_path, mode="a"))


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_demo_output_and_runs_are_ignored_by_git():
    for path in ("tamx-demo/run/tamx-run.json", "runs/cat/tamx-run.json"):
        done = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert done.returncode == 0, f"{path} is not ignored"
    assert subprocess.run(["git", "check-ignore", "-q", "pipeline/cli.py"], cwd=REPO).returncode == 1


def test_the_test_run_ends_saying_why_the_cjk_test_was_skipped(tmp_path):
    (tmp_path / "test_fonts.py").write_text(
        "import pytest\nfrom tests.conftest import CJK_FONT_MISSING\n\n"
        "def test_cjk():\n    pytest.skip(CJK_FONT_MISSING)\n\ndef test_other():\n    pytest.skip('other reason')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "2 skipped" in done.stdout, done.stdout + done.stderr
    assert done.stdout.count(CJK_FONT_MISSING) == 1 and "fonts-wqy-microhei" in CJK_FONT_MISSING
    tail = done.stdout.splitlines()[-3:]
    assert any(CJK_FONT_MISSING in line for line in tail)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "my photo.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return path


def demo_encode(*args):
    return tamx_cli("encode", "--model", "tamx-demo", "--prompt", "x", *args)


def test_encode_with_tamx_demo_names_the_model_and_sample_and_cleans_up_after_failures(tmp_path, image):
    """One torch session for the encode edges: the stored names, a piped stderr, failed encodes."""
    pytest.importorskip("transformers")
    from tamx.pipeline.demo import DEMO_MODEL, MODEL_DIR
    from tamx.pipeline.encode import model_name

    if not (MODEL_DIR / "config.json").is_file():
        pytest.skip("the bundled demo model is not built")
    run = tmp_path / "run"
    done = demo_encode("--image", image, "--out", run)
    assert done.exit_code == 0, done.output
    assert "encode" not in done.stderr.splitlines()  # no bare progress label when piped
    stored = open_run(run)
    assert stored.info.model_id == "tamx-demo" == DEMO_MODEL == model_name(str(MODEL_DIR))  # as `tamx demo` names it
    assert stored.sample_ids() == ["my-photo"]
    # a demo export goes into this run: the same model
    exported = tmp_path / "one.safetensors"
    assert tamx_cli("export", run, "--out", exported).exit_code == 0
    again = tamx_cli("import", exported, "--out", tmp_path / "other")
    assert again.exit_code == 0 and open_run(tmp_path / "other").info.model_id == "tamx-demo"

    # a failed encode removes the run folder it created (and the parents it made) ...
    missing = tmp_path / "new" / "deeper" / "run"
    failed = demo_encode("--image", tmp_path / "no.png", "--out", missing)
    assert failed.exit_code == 1 and "does not exist" in failed.stderr
    assert not (tmp_path / "new").exists()
    # ... but never a folder that was there before, nor a run with samples in it
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "bad.png").write_text("not an image")
    failed = demo_encode("--image", tmp_path / "bad.png", "--out", empty)
    assert failed.exit_code == 1 and "cannot read image" in failed.stderr
    assert empty.is_dir() and not any(empty.iterdir())
    failed = demo_encode("--image", tmp_path / "bad.png", "--id", "b", "--out", run)
    assert failed.exit_code == 1 and open_run(run).sample_ids() == ["my-photo"]
