"""The torch-free side of encode: its help and a light install need no torch (the import check
of the whole command line is in test_package.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_encode_help_needs_no_torch():
    code = (
        "import sys; from click.testing import CliRunner; from tamx.pipeline.cli import main; "
        "r = CliRunner().invoke(main, ['encode', '--help']); "
        "print(r.exit_code, '--max-new-tokens' in r.output, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.split() == ["0", "True", "False"], result.stderr


def test_encode_without_torch_says_what_to_install(tmp_path):
    """A light install (no torch) gets a one-line message, not a traceback."""
    blocker = tmp_path / "torch.py"
    blocker.write_text("raise ImportError('No module named torch')\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tamx.pipeline",
            "encode",
            "--model",
            "m",
            "--prompt",
            "p",
            "--image",
            "i.png",
            "--out",
            "o",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "pip install 'tamx[encode]'" in result.stderr
    assert "Traceback" not in result.stderr
