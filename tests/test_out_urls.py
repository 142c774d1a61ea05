"""Every path option of the command line is a local path, a file:// URL, or an fsspec URL that
is written through fsspec or refused before any work: never a local folder named "s3:".

The S3 cases run against moto's server on 127.0.0.1 (the session's `s3` fixture, tests/conftest.py); the
unreachable endpoint is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main

from benchmarks.planted import build

from .conftest import folder_bytes
from .test_store_s3 import s3fs


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A one-sample explained run, its folder dataset and the sample exported as a file."""
    folder = tmp_path_factory.mktemp("planted")
    run, data = build(folder, samples=1, leak=0.8, noise=0.1, variants=["tam"])
    exported = folder / "planted-000.safetensors"
    assert tamx(["export", run, "--out", exported]).exit_code == 0
    return run, data, exported


def tamx(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def commands(run, data, exported):
    """Each command with a path option that may name a URL, as a function of that option's value."""
    return {
        "render": lambda out: ["render", run, "--out", out, "--quiet"],
        "render-figures": lambda out: ["render", run, "--out", out, "--png", "--tokens", "0", "--quiet"],
        "export": lambda out: ["export", run, "--out", out],
        "eval": lambda out: ["eval", run, "--dataset", "folder", "--data", data, "--out", out, "--quiet"],
        "import": lambda out: ["import", exported, "--out", out, "--quiet"],
        "encode": lambda out: ["encode", "--model", "tamx-demo", "--image", "x.png", "--prompt", "?", "--out", out],
        "shapes": lambda out: ["shapes", "--out", out, "--scenes", "1"],
        "demo": lambda out: ["demo", "--out", out],
        "render-run": lambda url: ["render", url, "--out", "report", "--quiet"],
        "eval-data": lambda url: ["eval", run, "--dataset", "folder", "--data", url, "--out", "scores", "--quiet"],
        "encode-manifest": lambda url: ["encode", "--model", "tamx-demo", "--manifest", url, "--out", "run"],
    }


def assert_refused(result, code: int, *words: str) -> str:
    """The command failed with `code` and one error line holding `words`; no traceback. Returns the line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


COMMANDS = list(commands(None, None, None))
MALFORMED = ["s3:/x/y", "s3://", "foo://bucket/x", "gs:bucket/x"]


@pytest.mark.parametrize("url", MALFORMED)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_malformed_url_is_one_line_before_any_work(planted, tmp_path, monkeypatch, command, url):
    """s3:/x (one slash), s3:// (no bucket), foo:// (no such protocol), gs:bucket: status 2, one
    line naming the URL; no folder named "s3:" (or anything else) appears, nothing earlier changes."""
    monkeypatch.chdir(tmp_path)
    before = folder_bytes(planted[0].parent)
    result = tamx(commands(*planted)[command](url))
    assert_refused(result, 2, repr(url))
    assert list(tmp_path.iterdir()) == []
    assert folder_bytes(planted[0].parent) == before


LOCAL_ONLY = {
    "shapes": "s3://runs/shapes",
    "demo": "s3://runs/demo",
    "eval-data": "s3://runs/data",
    "encode-manifest": "s3://runs/manifest.jsonl",
}


@pytest.mark.parametrize("command", sorted(LOCAL_ONLY))
def test_a_url_where_only_a_local_path_will_do_is_refused_before_any_work(planted, tmp_path, monkeypatch, command):
    """shapes/demo --out (a dataset, a demo folder), eval --data, encode --manifest: status 2, one
    line saying a local path is needed; nothing is written anywhere."""
    monkeypatch.chdir(tmp_path)
    url = LOCAL_ONLY[command]
    result = tamx(commands(*planted)[command](url))
    assert_refused(result, 2, repr(url), "local")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def unreachable(monkeypatch):
    """An S3 endpoint on a closed port of 127.0.0.1, and botocore told not to retry (fast tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached client would keep another endpoint
    yield
    s3fs.S3FileSystem.clear_instance_cache()


URL_COMMANDS = ["render", "render-figures", "export", "eval", "import", "encode", "render-run"]


@pytest.mark.parametrize("command", URL_COMMANDS)
def test_an_unreachable_endpoint_is_one_line_before_any_work(planted, tmp_path, monkeypatch, unreachable, command):
    """Status 1 (not 70, no traceback), one line naming the URL and what to check, within seconds."""
    monkeypatch.chdir(tmp_path)
    before = folder_bytes(planted[0].parent)
    start = time.monotonic()
    result = tamx(commands(*planted)[command]("s3://runs/out"))
    assert time.monotonic() - start < 10
    assert_refused(result, 1, "s3://runs/out", "cannot be reached", "AWS_ENDPOINT_URL")
    assert list(tmp_path.iterdir()) == []
    assert folder_bytes(planted[0].parent) == before


@pytest.mark.parametrize("command", URL_COMMANDS)
def test_a_missing_bucket_is_one_line_before_any_work(planted, tmp_path, monkeypatch, s3, command):
    monkeypatch.chdir(tmp_path)
    result = tamx(commands(*planted)[command]("s3://no-such-bucket/out"))
    assert_refused(result, 1, "s3://no-such-bucket/out", "'no-such-bucket' does not exist")
    assert list(tmp_path.iterdir()) == []


def written_to_disk_and_s3(tmp_path, prefix: str, steps) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Run each step (a function of the output root) once into a local folder and once into
    s3://runs/PREFIX; the files each wrote, by name under its root."""
    s3fs.S3FileSystem.clear_instance_cache()
    local, remote = tmp_path / "local", f"s3://runs/{prefix}"
    for out in (local, remote):
        for step in steps:
            result = tamx(step(out))
            assert result.exit_code == 0, result.output
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    on_s3 = {path.removeprefix(f"runs/{prefix}/"): fs.cat_file(path) for path in fs.find(f"runs/{prefix}")}
    assert not (tmp_path / "s3:").exists() and not Path("s3:").exists()
    return folder_bytes(local), on_s3


def test_render_eval_and_export_write_to_s3_what_they_write_to_disk(planted, tmp_path, s3):
    """The pages, the scores and the exported file at s3://runs/... are, byte for byte, the files
    the same commands write to a local folder; nothing named "s3:" appears locally."""
    run, _, _ = planted
    local, on_s3 = written_to_disk_and_s3(
        tmp_path,
        "outputs",
        [
            lambda out: commands(*planted)["render"](f"{out}/report"),
            lambda out: commands(*planted)["eval"](f"{out}/scores"),
            lambda out: ["export", run, "--out", f"{out}/sample.safetensors"],
        ],
    )
    assert {"report/index.html", "report/samples/planted-000.html", "scores/summary.json", "sample.safetensors"} < set(
        local
    )
    assert on_s3 == local


@pytest.mark.slow
def test_render_figures_go_to_s3_beside_the_pages(planted, tmp_path, s3):
    local, on_s3 = written_to_disk_and_s3(
        tmp_path, "figures", [lambda out: commands(*planted)["render-figures"](f"{out}/report")]
    )
    assert sorted(name for name in local if name.startswith("report/figures/planted-000/")) == [
        "report/figures/planted-000/token_000.png",
        "report/figures/planted-000/variants.png",
    ]
    assert on_s3 == local


def test_render_and_export_name_what_they_wrote_at_the_url(planted, tmp_path, s3):
    """The last lines say where the files are: the URL itself, not a local path made of it."""
    s3fs.S3FileSystem.clear_instance_cache()
    result = tamx(commands(*planted)["render"]("s3://runs/named/report"))
    assert result.exit_code == 0 and "open s3://runs/named/report/index.html" in result.output, result.output
    result = tamx(commands(*planted)["export"]("s3://runs/named/sample.safetensors"))
    assert result.exit_code == 0 and "wrote s3://runs/named/sample.safetensors" in result.output, result.output


def test_file_urls_work_for_runs_and_outputs(planted, tmp_path, monkeypatch):
    """file:// names the local path for a run and for every output: the same files as the bare paths."""
    monkeypatch.chdir(tmp_path)
    run, data, exported = planted
    for out, url in ((tmp_path / "plain", lambda p: p), (tmp_path / "url", lambda p: f"file://{p}")):
        steps = [
            ["import", url(exported), "--out", url(out / "run"), "--quiet"],
            ["render", url(out / "run"), "--out", url(out / "report"), "--quiet"],
            ["eval", url(run), "--dataset", "folder", "--data", url(data), "--out", url(out / "scores"), "--quiet"],
            ["export", url(out / "run"), "--out", url(out / "sample.safetensors")],
        ]
        for step in steps:
            result = tamx(step)
            assert result.exit_code == 0, (step, result.output)
    plain, via_url = folder_bytes(tmp_path / "plain"), folder_bytes(tmp_path / "url")
    assert "report/index.html" in plain and "scores/summary.json" in plain and "sample.safetensors" in plain
    assert plain.keys() == via_url.keys()
    for name in ("report/index.html", "report/samples/planted-000.html", "scores/summary.json", "sample.safetensors"):
        assert plain[name] == via_url[name], name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "url"]


def test_eval_of_a_run_at_a_url_writes_its_scores_under_the_run_by_default(planted, tmp_path, monkeypatch, s3):
    """Without --out the scores go to RUN/eval/DATASET, at the URL for a run at a URL (not to a
    local folder named after it)."""
    monkeypatch.chdir(tmp_path)
    s3fs.S3FileSystem.clear_instance_cache()
    run, data, exported = planted
    url = "s3://runs/scored/run"
    assert tamx(["import", exported, "--out", url, "--quiet"]).exit_code == 0
    assert tamx(["explain", url, "--quiet"]).exit_code == 0
    result = tamx(["eval", url, "--dataset", "folder", "--data", data, "--quiet"])
    assert result.exit_code == 0, result.output
    local = tmp_path / "local"
    assert tamx(["eval", run, "--dataset", "folder", "--data", data, "--out", local, "--quiet"]).exit_code == 0
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    assert fs.cat_file("runs/scored/run/eval/folder/summary.json") == (local / "summary.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local"]


@pytest.mark.slow
def test_encode_of_a_dataset_into_a_run_at_a_url_keeps_its_manifest_off_the_local_disk(tmp_path, monkeypatch, s3):
    """encode --dataset writes the manifest it reads beside a local run; beside a run at a URL it
    goes to a temporary folder, not to a local folder named after the URL."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    s3fs.S3FileSystem.clear_instance_cache()
    assert tamx(["shapes", "--out", "shapes", "--scenes", "1"]).exit_code == 0
    url = "s3://runs/encoded/run"
    args = ["encode", "--model", "tamx-demo", "--dataset", "folder", "--data", "shapes", "--device", "cpu"]
    result = tamx([*args, "--out", url, "--quiet"])
    assert result.exit_code == 0, result.output
    info = tamx(["info", url, "--json"])
    assert info.exit_code == 0 and len(json.loads(info.output)["samples"]) == 1, info.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]
