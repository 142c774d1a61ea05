"""A run on an S3-protocol object store (moto's standalone server on 127.0.0.1, started here):
import, explain, render and eval through the command line equal the same run on local disk,
and a writer killed mid-sample loses nothing committed. The server is the session's `s3` fixture
(tests/conftest.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main

from tamx import open_run

moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (pip install -e '.[test]')")
s3fs = pytest.importorskip("s3fs", reason="the S3 tests need s3fs (pip install -e '.[test]')")

from benchmarks.planted import build  # noqa: E402


def tamx_cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_a_run_on_s3_equals_the_same_run_on_local_disk(s3, tmp_path):
    source, data = build(tmp_path / "planted", samples=2, leak=0.8, noise=0.12, variants=["cam"])
    files = []
    for sample_id in open_run(source).sample_ids():
        files.append(tmp_path / f"{sample_id}.safetensors")
        tamx_cli("export", source, "--sample", sample_id, "--variant", "cam", "--out", files[-1])
    local, remote = tmp_path / "local" / "run", "s3://runs/planted/run"
    for run in (local, remote):
        tamx_cli("import", *files, "--out", run, "--quiet")
        tamx_cli("explain", run, "--quiet", *(["--workers", "2"] if run == remote else []))
        tamx_cli("render", run, "--out", tmp_path / f"pages-{'s3' if run == remote else 'local'}", "--quiet")
        out = tmp_path / f"eval-{'s3' if run == remote else 'local'}"
        tamx_cli("eval", run, "--dataset", "folder", "--data", data, "--out", out, "--quiet")
    a, b = open_run(local), open_run(remote)
    assert a.sample_ids() == b.sample_ids() == ["planted-000", "planted-001"]
    for sample_id in a.sample_ids():
        assert a.variants(sample_id) == b.variants(sample_id) == ["cam", "tam"]
        np.testing.assert_array_equal(a.sample(sample_id).hidden, b.sample(sample_id).hidden)
        for variant in ("cam", "tam"):
            for name, value in a.maps(sample_id, variant).arrays().items():
                np.testing.assert_array_equal(getattr(b.maps(sample_id, variant), name), value)
    assert (
        json.loads((tmp_path / "eval-s3" / "summary.json").read_text())["variants"]
        == json.loads((tmp_path / "eval-local" / "summary.json").read_text())["variants"]
    )
    pages = sorted(str(p.relative_to(tmp_path / "pages-local")) for p in (tmp_path / "pages-local").rglob("*.html"))
    assert len(pages) == 3
    for page in pages:
        assert (tmp_path / "pages-s3" / page).read_text() == (tmp_path / "pages-local" / page).read_text()
    info = json.loads(tamx_cli("info", remote, "--json").output)
    assert [s["id"] for s in info["samples"]] == a.sample_ids() and info["garbage"] == {}


def test_a_writer_killed_mid_sample_on_s3_loses_nothing_committed(s3, tmp_path):
    url = "s3://runs/killed/run"
    script = textwrap.dedent(
        f"""
        from tamx import create_run
        from tamx.synthetic import synthetic_run_info, synthetic_sample
        run = create_run({url!r}, synthetic_run_info())
        for i in range(200):
            run.write_sample(synthetic_sample(f"s{{i:03d}}", grids=[(1, 24, 24)], hidden_size=512, seed=i))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    deadline = time.time() + 90
    while time.time() < deadline and len(fs.glob("runs/killed/run/samples/*/sample.json", refresh=True)) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = open_run(url, mode="a")
    ids = run.sample_ids()
    assert 3 <= len(ids) < 200
    for sample_id in ids:
        run.sample(sample_id)  # every committed sample reads with valid checksums
    left = run.garbage()
    assert set(left) <= {f"s{i:03d}" for i in range(200)} - set(ids), "garbage only where nothing is committed"
    for sample_id in left:  # the next write of such a sample replaces what the killed writer left
        from tamx.synthetic import synthetic_sample

        run.write_sample(synthetic_sample(sample_id, grids=[(1, 24, 24)], hidden_size=512))
    assert open_run(url).garbage() == {}


@pytest.mark.slow
def test_lost_objects_on_s3_are_named_by_info_from_one_listing_and_explain_recomputes_maps(s3, monkeypatch):
    from tamx import create_run
    from tamx.store import FsspecObjects
    from tamx.synthetic import synthetic_run_info, synthetic_sample

    url = "s3://runs/lost/run"
    run = create_run(url, synthetic_run_info())
    for i, sample_id in enumerate(["a", "b", "c"]):
        run.write_sample(synthetic_sample(sample_id, grids=[(1, 6, 8)], seed=i))
    tamx_cli("explain", url, "--quiet")
    walks = []
    walk = FsspecObjects.walk
    monkeypatch.setattr(FsspecObjects, "walk", lambda self, prefix: walks.append(prefix) or walk(self, prefix))
    info = json.loads(tamx_cli("info", url, "--json").output)
    assert walks == [""] and info["damaged"] == info["damaged_maps"] == {}, "a whole run: one listing"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    slot = {k: json.loads(fs.cat_file(f"runs/lost/run/samples/{k}.json"))["slot"] for k in ("a/sample", "b/maps/tam")}
    fs.rm_file(f"runs/lost/run/samples/a/sample.{slot['a/sample']}")
    fs.rm_file(f"runs/lost/run/samples/b/maps/tam.{slot['b/maps/tam']}")
    untouched = fs.cat_file("runs/lost/run/samples/c/maps/tam.json")
    info = json.loads(tamx_cli("info", url, "--json").output)
    assert list(info["damaged"]) == ["a"] and "is missing; re-encode or re-import" in info["damaged"]["a"]
    assert list(info["damaged_maps"]) == ["b"] and "--variant tam" in info["damaged_maps"]["b"]["tam"]
    assert "1 sample(s) explained, 2 already stored" in tamx_cli("explain", url).output  # a's maps are whole
    info = json.loads(tamx_cli("info", url, "--json").output)
    assert info["damaged_maps"] == {} and list(info["damaged"]) == ["a"]
    assert fs.cat_file("runs/lost/run/samples/c/maps/tam.json") == untouched
    open_run(url).maps("b")


@pytest.mark.slow
def test_a_reader_racing_an_overwriter_on_s3_sees_whole_versions(s3):
    from tamx import create_run
    from tamx.synthetic import synthetic_run_info, synthetic_sample

    url = "s3://runs/race/run"
    versions = [synthetic_sample("s", grids=[(1, 8, 8)], hidden_size=256, seed=i) for i in range(2)]
    create_run(url, synthetic_run_info()).write_sample(versions[0])
    script = textwrap.dedent(
        f"""
        from tamx import open_run
        from tamx.synthetic import synthetic_sample
        run = open_run({url!r}, mode="a")
        versions = [synthetic_sample("s", grids=[(1, 8, 8)], hidden_size=256, seed=i) for i in range(2)]
        print("ready", flush=True)
        for i in range(16):
            run.write_sample(versions[i % 2], overwrite=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    reader, seen, reads = open_run(url), set(), 0
    while proc.poll() is None or reads < 10:
        sample = reader.sample("s", media=False)
        (match,) = [i for i, v in enumerate(versions) if np.array_equal(sample.hidden, v.hidden)]
        seen.add(match)
        reads += 1
    assert proc.wait() == 0 and seen == {0, 1}, f"{reads} reads saw {seen}"


def test_faithfulness_records_round_trip_on_s3(s3, tmp_path):
    from tamx import create_run
    from tamx.synthetic import synthetic_run_info, synthetic_sample

    from .test_faithfulness_store import _record, _same

    run = create_run("s3://runs/faith/run", synthetic_run_info())
    run.write_sample(synthetic_sample("a", grids=[(1, 4, 4)]))
    run.write_faithfulness("a", _record())
    again = open_run("s3://runs/faith/run")
    _same(again.faithfulness("a", "tam"), _record())
    assert again.faithfulness_variants("a") == ["tam"] and not again.survey().garbage
