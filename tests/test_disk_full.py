"""A full disk (a small tmpfs; needs root, else skipped) during import, explain, render, export
and eval: the command stops with one line naming what it was writing and keeps what it finished;
no partial file is left. The encode case is in test_encode_inputs.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pytest
from tamx.pipeline.files import write_text
from tamx.pipeline.interchange import export_sample

from tamx import open_run
from tamx.errors import DiskFullError, SampleError
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .refusals import refused, tamx_cli


@contextmanager
def small_disk(tmp_path: Path, size: str = "2m"):
    """A tmpfs of `size` mounted at tmp_path/disk (as root), always unmounted."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small disk")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill the disk with a file, leaving about `leave` bytes free."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    with open(disk / "filler", "wb") as handle, suppress(OSError):
        handle.write(b"\0" * max(0, free - leave))


def _files(n: int, tmp_path: Path) -> list[Path]:
    paths = []
    for i in range(n):
        path = tmp_path / f"f{i}.safetensors"
        export_sample(path, synthetic_sample(f"s{i}", grids=[(1, 20, 20)], seed=i), synthetic_run_info())
        paths.append(path)
    return paths


def test_disk_full_during_import_stops_with_one_line_and_keeps_earlier_samples(tmp_path):
    files = _files(12, tmp_path)
    with small_disk(tmp_path, "1m") as disk:
        run = disk / "run"
        result = tamx_cli("import", *files, "--out", run, "--quiet")
        out = refused(result, "Error: no space left on device while writing sample 's")
        assert f"into {run}" in out and "failed:" not in out, "it stops: no list of every later file failing"
        stored = open_run(run).sample_ids()
        assert 0 < len(stored) < len(files)
        for sample_id in stored:  # every earlier sample reads back whole
            np.testing.assert_array_equal(
                open_run(run).sample(sample_id).hidden, synthetic_sample(sample_id, grids=[(1, 20, 20)],
                                                                          seed=int(sample_id[1:])).hidden
            )  # fmt: skip
        info = tamx_cli("info", run)
        assert info.exit_code == 0 and f"{len(stored)} complete, 1 incomplete" in info.output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_disk_full_during_explain_stops_and_keeps_finished_maps(tmp_path, workers):
    files = _files(3, tmp_path)
    with small_disk(tmp_path, "2m") as disk:
        run = disk / "run"
        assert tamx_cli("import", *files, "--out", run, "--quiet").exit_code == 0
        assert tamx_cli("explain", run, "--samples", "s0", "--quiet").exit_code == 0
        fill(disk)
        out = refused(
            tamx_cli("explain", run, "--workers", workers, "--quiet"),
            "no space left on device while writing the maps 'tam'",
        )
        assert "failed:" not in out
        reopened = open_run(run)
        assert reopened.variants("s0") == ["tam"] and reopened.maps("s0").final.shape[0] == 20
        assert reopened.variants("s1") == [] and reopened.variants("s2") == [], "nothing half-written is listed"
        (disk / "filler").unlink()
        assert tamx_cli("explain", run, "--quiet").exit_code == 0, "once there is space it resumes"
        assert [open_run(run).variants(s) for s in ("s0", "s1", "s2")] == [["tam"]] * 3


def test_disk_full_during_render_stops_and_leaves_no_partial_page(tmp_path, run_path):
    tamx_cli("explain", run_path, "--quiet")
    with small_disk(tmp_path, "4m") as disk:
        first = disk / "first"
        assert tamx_cli("render", run_path, "--out", first, "--samples", "img", "--quiet").exit_code == 0
        page = (first / "samples" / "img.html").stat().st_size
        fill(disk, leave=int(page * 1.5))
        out = refused(
            tamx_cli("render", run_path, "--out", disk / "second", "--quiet"), "no space left on device while writing"
        )
        assert "failed:" not in out
        assert not list(disk.rglob("*.partial")), "no half-written file is left"
        for html in disk.rglob("*.html"):
            assert html.read_text().rstrip().endswith("</html>"), f"{html} is complete"
        assert not (disk / "second" / "index.html").exists()


def test_disk_full_during_export_and_eval_output(tmp_path, eval_case):
    run_path, data, _ = eval_case
    with small_disk(tmp_path, "1m") as disk:
        fill(disk)
        refused(
            tamx_cli("export", run_path, "--sample", "first", "--out", disk / "x.safetensors"),
            f"no space left on device while writing {disk / 'x.safetensors'}",
        )
        refused(
            tamx_cli("eval", run_path, "--dataset", "folder", "--data", data, "--out", disk / "scores", "--quiet"),
            "no space left on device while writing",
        )
        assert not list(disk.rglob("*.partial"))


def test_write_text_raises_disk_full_naming_the_file(tmp_path):
    with small_disk(tmp_path, "1m") as disk:
        fill(disk)
        with pytest.raises(DiskFullError, match=r"while writing .*page\.html"):
            write_text(disk / "page.html", "x" * 100_000)
        assert not (disk / "page.html.partial").exists()


def test_errors_cross_process_boundaries_intact():
    """explain --workers N raises a full disk from a worker process: the message survives pickling."""
    import pickle

    for error in (DiskFullError("the maps 'tam' of sample 'a'"), SampleError("a", "hidden", "is damaged")):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
