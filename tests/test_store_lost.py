"""Issue 20, classes 3 and 4, through the command line and the Python API: lost data objects are
named by `tamx info` (from one listing) and repaired by `tamx explain`; a killed commit write's
aside file goes with the next write; a reader racing an overwriter sees a whole old or new
version, never an error."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main
from tamx.pipeline.info import run_summary

from tamx import ExplainSettings, explain_sample, open_run
from tamx.errors import SampleError
from tamx.store import LocalObjects
from tamx.synthetic import synthetic_sample

from .conftest import LAYOUTS
from .refusals import tamx_output


def digests(run_path: Path, sample_ids) -> dict[str, str]:
    """sha256 of every object of the given samples: proof that nothing else was touched."""
    return {
        str(p.relative_to(run_path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for s in sample_ids
        for p in sorted((run_path / "samples" / s).rglob("*"))
        if p.is_file()
    }


def data_object(run_path: Path, record: str) -> Path:
    """The data object the commit `record` (".../sample" or ".../maps/<variant>") names."""
    commit = json.loads((run_path / f"{record}.json").read_text())
    return run_path / f"{record}.{commit['slot']}"


# ---------------------------------------------------------------------------- class 3: lost objects


def test_info_names_a_sample_whose_data_object_is_gone(run_path, tmp_path):
    others = digests(run_path, ["img", "multi"])
    lost = data_object(run_path, "samples/video/sample")
    lost.unlink()
    out = tamx_output("info", run_path)
    assert "samples  2 complete, 0 incomplete, 1 damaged" in out
    line = [row for row in out.splitlines() if row.startswith("  video:")]
    assert len(line) == 1 and f"data object samples/video/{lost.name} is missing; re-encode or re-import" in line[0]
    summary = json.loads(tamx_output("info", run_path, "--json"))
    assert [s["id"] for s in summary["samples"]] == ["img", "multi"] and list(summary["damaged"]) == ["video"]
    assert summary["garbage"] == {}, "the sample's commit is not a killed writer's leftover"
    # reading it fails with one line, after the bounded retry (its commit does not change)
    out = tamx_output("export", run_path, "--sample", "video", "--out", tmp_path / "v.safetensors", code=1)
    assert len(out.strip().splitlines()) == 1 and f"{lost.name} is missing" in out
    assert digests(run_path, ["img", "multi"]) == others


def test_info_names_a_variant_whose_maps_object_is_gone_and_a_short_one(run_path):
    tamx_output("explain", run_path, "--quiet")
    lost = data_object(run_path, "samples/img/maps/tam")
    lost.unlink()
    short = data_object(run_path, "samples/multi/maps/tam")
    short.write_bytes(short.read_bytes()[:-10])
    out = tamx_output("info", run_path)
    assert "samples  3 complete, 0 incomplete\n" in out, "the samples themselves are whole"
    assert "damaged maps (2):" in out
    (img,) = [row for row in out.splitlines() if row.startswith("  img tam:")]
    assert f"data object samples/img/maps/{lost.name} is missing" in img
    assert f"`tamx explain {run_path} --variant tam`" in img
    (multi,) = [row for row in out.splitlines() if row.startswith("  multi tam:")]
    assert "bytes where its commit says" in multi
    summary = json.loads(tamx_output("info", run_path, "--json"))
    assert sorted(summary["damaged_maps"]) == ["img", "multi"] and summary["damaged"] == {}


def test_info_checks_every_object_from_one_listing_without_reading_data(run_path, monkeypatch):
    """Counted at the object layer (every file access of a local run goes through LocalObjects)
    and at the OS (Python's audit hook sees every open()): one walk of the run, each commit read
    once, no data object opened, no per-sample listing or existence check."""
    tamx_output("explain", run_path, "--quiet")
    calls: dict[str, list] = {"walk": [], "list": [], "glob": [], "exists": [], "read": []}
    for name, seen in calls.items():
        method = getattr(LocalObjects, name)
        monkeypatch.setattr(
            LocalObjects, name, lambda self, *a, _m=method, _seen=seen, **k: _seen.append(a[:1]) or _m(self, *a, **k)
        )
    opened.clear()
    opened.append(str(run_path))  # the first entry says which folder to watch
    try:
        summary = run_summary(run_path)
    finally:
        files = opened[1:]
        opened.clear()
    assert [s["variants"] for s in summary["samples"]] == [["tam"]] * 3
    assert calls["walk"] == [("",)] and calls["list"] == calls["glob"] == calls["exists"] == []
    commits = sorted(f"samples/{s}/{c}" for s in LAYOUTS for c in ("sample.json", "maps/tam.json"))
    assert sorted(k for (k,) in calls["read"]) == sorted(["tamx-run.json", *commits]), "each commit read once"
    assert sorted(str(Path(f).relative_to(run_path)) for f in files) == sorted(["tamx-run.json", *commits])


opened: list[str] = []


def _audit(event: str, args) -> None:
    path = args[0] if event == "open" and opened and isinstance(args[0], str | os.PathLike) else None
    if path is not None and str(path).startswith(opened[0] + os.sep):
        opened.append(str(path))


sys.addaudithook(_audit)  # inert while `opened` is empty


def test_explain_recomputes_a_variant_whose_maps_object_is_gone_and_leaves_whole_ones(run_path, caplog):
    tamx_output("explain", run_path, "--quiet")
    before = open_run(run_path).maps("img")
    whole = digests(run_path, ["multi", "video"])
    sample_bytes = data_object(run_path, "samples/img/sample").read_bytes()
    data_object(run_path, "samples/img/maps/tam").unlink()
    with caplog.at_level("WARNING", logger="tamx.store"):
        out = CliRunner().invoke(main, ["explain", str(run_path)])
    assert out.exit_code == 0, out.output
    assert "variant 'tam': 1 sample(s) explained, 2 already stored" in out.output
    assert any("variant 'tam' is not whole" in r.getMessage() for r in caplog.records)
    after = open_run(run_path).maps("img")
    for name, value in before.arrays().items():
        np.testing.assert_array_equal(getattr(after, name), value)
    assert digests(run_path, ["multi", "video"]) == whole, "the whole variants are left alone"
    assert data_object(run_path, "samples/img/sample").read_bytes() == sample_bytes, "hidden states untouched"
    summary = json.loads(tamx_output("info", run_path, "--json"))
    assert summary["damaged_maps"] == {} and summary["garbage"] == {}


KILLED_COMMIT = """
import os, signal, sys
from tamx import open_run
from tamx.synthetic import synthetic_sample
run = open_run(sys.argv[1], mode="a")
new = synthetic_sample("img", grids=[(1, 9, 13)], dtype="bfloat16", seed=7)
maps = run.maps("img", "tam")
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # killed between writing the commit aside and renaming it
if sys.argv[2] == "sample":
    run.write_sample(new, overwrite=True)
else:
    run.write_maps("img", maps, overwrite=True)
"""


@pytest.mark.parametrize("record", ["sample", "maps"])
def test_a_killed_commit_writes_aside_file_goes_with_the_next_write(run_path, record):
    tamx_output("explain", run_path, "--quiet", "--samples", "img")
    folder = run_path / "samples" / "img" / ("maps" if record == "maps" else "")
    name = "tam.json" if record == "maps" else "sample.json"
    old = (folder / name).read_bytes()
    others = digests(run_path, ["multi", "video"])
    proc = subprocess.run([sys.executable, "-c", KILLED_COMMIT, str(run_path), record], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    (stray,) = [p for p in folder.iterdir() if p.name.startswith(f".{name}.")]
    assert (folder / name).read_bytes() == old, "the previous version stays committed"
    out = tamx_output("info", run_path)
    assert "uncommitted objects" in out and stray.name in out
    run = open_run(run_path, mode="a")
    if record == "sample":
        run.write_sample(synthetic_sample("img", grids=[(1, 9, 13)], dtype="bfloat16", seed=7), overwrite=True)
    else:
        tamx_output("explain", run_path, "--quiet", "--samples", "img", "--overwrite")
    assert not stray.exists() and not [p for p in folder.iterdir() if p.name.startswith(".")]
    assert json.loads(tamx_output("info", run_path, "--json"))["garbage"] == {}
    assert digests(run_path, ["multi", "video"]) == others


# ---------------------------------------------------------------------------- class 4: readers racing an overwriter

OVERWRITER = """
import dataclasses, sys
from tamx import open_run
from tamx.synthetic import synthetic_sample
run = open_run(sys.argv[1], mode="a")
record, rounds = sys.argv[2], int(sys.argv[3])
versions = [synthetic_sample("s", grids=[(1, 8, 8)], hidden_size=256, seed=i) for i in range(2)]
if record == "maps":  # the test stored both versions of the maps as variants v0 and v1
    maps = [dataclasses.replace(run.maps("s", f"v{i}"), variant="tam") for i in range(2)]
print("ready", flush=True)
for i in range(rounds):
    if record == "sample":
        run.write_sample(versions[i % 2], overwrite=True)
    else:
        run.write_maps("s", maps[i % 2], overwrite=True)
"""


def race(run_path: Path, record: str, rounds: int, read) -> tuple[int, set[int]]:
    """Overwrite sample "s" (or its maps) `rounds` times in another process while `read()` runs
    here in a loop: how many reads and which versions they saw (read returns 0 or 1)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", OVERWRITER, str(run_path), record, str(rounds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "ready\n"
    reads, seen = 0, set()
    while proc.poll() is None or reads < 50:
        seen.add(read())
        reads += 1
    assert proc.wait() == 0
    return reads, seen


@pytest.mark.parametrize("record", ["sample", "maps"])
def test_a_reader_racing_an_overwriter_sees_a_whole_old_or_new_version(run_path, record):
    """Before the fix, 22 of ~2000 sample reads failed with "data object ... is missing"."""
    run = open_run(run_path, mode="a")
    versions = [synthetic_sample("s", grids=[(1, 8, 8)], hidden_size=256, seed=i) for i in range(2)]
    run.write_sample(versions[0])
    maps = [explain_sample(versions[0], ExplainSettings(eci=e), "tam", defer=True) for e in ("relevance", "off")]
    for variant, value in (("tam", maps[0]), ("v0", maps[0]), ("v1", maps[1])):
        run.write_maps("s", dataclasses.replace(value, variant=variant))
    others = digests(run_path, LAYOUTS)
    reader = open_run(run_path)

    def read_sample() -> int:
        sample = reader.sample("s", media=False)
        matches = [i for i, v in enumerate(versions) if np.array_equal(sample.hidden, v.hidden)]
        assert len(matches) == 1 and np.array_equal(sample.input_ids, versions[matches[0]].input_ids)
        return matches[0]

    def read_maps() -> int:
        got = reader.maps("s", "tam")
        matches = [i for i, m in enumerate(maps) if np.array_equal(got.final, m.final)]
        assert len(matches) == 1 and np.array_equal(got.cam, maps[matches[0]].cam)
        return matches[0]

    reads, seen = race(run_path, record, 200, read_sample if record == "sample" else read_maps)
    assert seen == {0, 1}, f"{reads} reads saw versions {seen}: no race took place"
    summary = run_summary(run_path)
    assert summary["damaged"] == summary["damaged_maps"] == summary["garbage"] == {}
    assert digests(run_path, LAYOUTS) == others


def test_info_racing_an_overwriter_reports_no_damage(run_path):
    run = open_run(run_path, mode="a")
    run.write_sample(synthetic_sample("s", grids=[(1, 8, 8)], hidden_size=256, seed=0))

    def info() -> int:
        summary = run_summary(run_path)
        assert summary["damaged"] == {}, summary["damaged"]
        return len(summary["samples"])

    _, seen = race(run_path, "sample", 100, info)
    assert seen == {4}


def test_a_missing_object_under_a_commit_that_holds_still_is_reported(run_path):
    """The retry is bounded: it only starts again when the commit changed."""
    data_object(run_path, "samples/img/sample").unlink()
    with pytest.raises(SampleError, match="is missing; re-encode or re-import this sample"):
        open_run(run_path).sample("img")
