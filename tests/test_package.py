"""Packaging promises: light imports, ruff-clean sources, CI running the README's command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_tamx_and_the_command_line_load_no_heavy_module():
    """`import tamx`, the command line's start-up and encode's torch-free modules load neither
    torch nor the explain side's libraries (numba, zarr, jinja2, cv2, numpy, fsspec): each
    command imports its own."""
    heavy = ("torch", "transformers", "numba", "zarr", "jinja2", "cv2", "numpy", "fsspec", "matplotlib")
    code = f"import sys, tamx, tamx.pipeline.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "", f"`import tamx, tamx.pipeline.cli` loaded {out.strip()}"
    code = "import sys, tamx.pipeline.encode.prompt, tamx.pipeline.encode.adapters; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "False", "encode's prompt alignment and adapter registry import torch"


def _ruff() -> str:
    beside = Path(sys.executable).parent / "ruff"
    found = str(beside) if beside.exists() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    return found


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_sources_are_ruff_clean(args):
    result = subprocess.run([_ruff(), *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_stage_package_is_installed_inside_tamx():
    """pipeline/ installs as tamx.pipeline (package-dir): each of its package folders must be in
    pyproject's package list, or a wheel would miss it."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(("tamx", *init.parent.relative_to(ROOT).parts)) for init in (ROOT / "pipeline").rglob("__init__.py")
    }
    assert folders <= listed, f"add {sorted(folders - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert {"tamx", "vis_templates"} <= listed


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "python -m pytest" in readme
    assert ci[-1] == "python -m pytest"
    assert "pip install torch==2.13.0" in readme and "torch==2.13.0" in "\n".join(ci)


def test_example_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "example/synthetic_run.py", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "one-image TAM maps: (20, 391)" in result.stdout
