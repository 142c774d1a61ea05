"""The torch-free side of encode: importing tamx and the command line never loads torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_import_stays_torch_free():
    code = "import sys, tamx, pipeline.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_encode_help_needs_no_torch():
    code = (
        "import sys; from click.testing import CliRunner; from pipeline.cli import main; "
        "r = CliRunner().invoke(main, ['encode', '--help']); "
        "print(r.exit_code, '--max-new-tokens' in r.output, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.split() == ["0", "True", "False"], result.stderr
