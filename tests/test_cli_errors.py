"""The command line's error path: a tamx error is one line and status 1, an unexpected one says
it is a bug (status 70, -vv for the traceback), Ctrl-C exits 130, and what the system refuses
(a file in the way, a read-only place) is one line naming the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tamx.errors import TamxError

from .refusals import refused, tamx_cli

ROOT = Path(__file__).resolve().parents[1]


def test_a_tamx_error_is_one_line_and_status_1(tmp_path):
    out = refused(tamx_cli("info", tmp_path), "not a tamx run store")
    assert out.startswith("Error: ") and out.count("\n") == 1


def test_a_multi_line_message_is_printed_on_one_line(run_path, monkeypatch):
    def broken(path):
        raise TamxError("first line\nsecond line")

    _patch(monkeypatch, "run_summary", broken)
    out = refused(tamx_cli("info", run_path), "Error: first line second line")
    assert out.count("\n") == 1


def test_an_unexpected_error_says_it_is_a_bug_and_where_to_report_it(run_path, monkeypatch):
    def broken(path):
        return {}["schema_version"]

    _patch(monkeypatch, "run_summary", broken)
    out = refused(tamx_cli("info", run_path), "internal error (KeyError: 'schema_version')", code=70)
    assert "This is a bug in tamx" in out and "please report it at" in out and "-vv" in out


def test_minus_vv_shows_the_traceback(run_path, monkeypatch):
    def broken(path):
        raise ZeroDivisionError("boom")

    _patch(monkeypatch, "run_summary", broken)
    with pytest.raises(ZeroDivisionError):
        tamx_cli("-vv", "info", run_path)
    with pytest.raises(TamxError):  # tamx's own errors too
        tamx_cli("-vv", "explain", run_path.parent)
    refused(tamx_cli("-v", "info", run_path), "internal error", code=70)


def test_ctrl_c_exits_130_and_says_how_to_resume(run_path, monkeypatch):
    def interrupted(path):
        raise KeyboardInterrupt

    _patch(monkeypatch, "run_summary", interrupted)
    refused(tamx_cli("info", run_path), "interrupted; run the same command again to resume", code=130)


def test_what_the_system_refuses_is_one_line(run_path, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args in (
        ("render", run_path, "--out", blocker / "report", "--quiet"),
        ("export", run_path, "--sample", "img", "--out", blocker / "x.safetensors"),
    ):
        out = refused(tamx_cli(*args), str(blocker))
        assert out.startswith("Error: ") and ("Not a directory" in out or "File exists" in out)


def test_python_m_pipeline_goes_through_the_same_path(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "tamx.pipeline", "info", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 1 and result.stderr.startswith("Error: ") and "not a tamx run store" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def _patch(monkeypatch, name: str, replacement) -> None:
    """Replace a stage function wherever the command line may look it up (it may import it lazily)."""
    import tamx.pipeline.cli
    import tamx.pipeline.info

    monkeypatch.setattr(tamx.pipeline.info, name, replacement)
    if hasattr(tamx.pipeline.cli, name):
        monkeypatch.setattr(tamx.pipeline.cli, name, replacement)


def test_an_os_refusal_while_exporting_is_the_users_to_fix(run_path, tmp_path):
    # tamx writes safetensors itself (bf16 stays bf16): the refusal is a plain OSError naming the file
    out = refused(tamx_cli("export", run_path, "--sample", "img", "--out", "/proc/x.safetensors"))
    assert "internal error" not in out and "/proc/x.safetensors" in out and len(out.strip().splitlines()) == 1
