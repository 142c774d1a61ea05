"""The command line end to end: import -> explain -> info -> export on synthetic samples."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file
from tamx.pipeline.cli import main
from tamx.pipeline.interchange import export_sample

from tamx import open_run
from tamx.interchange import read_safetensors, safetensors_bytes
from tamx.synthetic import synthetic_run_info, synthetic_sample


def load_file(path):
    """The tensors of a safetensors file by name (BF16 as uint16 bits)."""
    return {name: value for name, (_, value) in read_safetensors(path)[0].items()}


def tamx_cli(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def sample_files(tmp_path):
    files = []
    for seed, grids in enumerate([[(1, 9, 13)], [(1, 5, 6), (1, 4, 4)], [(3, 5, 5)]]):
        path = tmp_path / f"s{seed}.safetensors"
        sample = synthetic_sample(f"s{seed}", grids=grids, seed=seed, dtype="bfloat16")
        export_sample(path, sample, synthetic_run_info(dtype="bfloat16"))
        files.append(path)
    return files


def test_import_explain_export_round_trip(tmp_path, sample_files):
    run = tmp_path / "run"
    tamx_cli("import", *sample_files, "--out", run)
    assert open_run(run).sample_ids() == ["s0", "s1", "s2"]
    assert open_run(run).sample("s0").hidden_dtype == "bfloat16", "bf16 restored losslessly"
    tamx_cli("explain", run, "--quiet")
    tamx_cli("explain", run, "--no-eci", "--filter", "none", "--quiet")
    out = tamx_cli("info", run).output
    assert "3 complete, 0 incomplete" in out and "cam (3), tam (3)" in out and "video 3x5x5" in out

    exported = tmp_path / "out.safetensors"
    tamx_cli("export", run, "--sample", "s1", "--out", exported)
    tensors = load_file(str(exported))
    maps = open_run(run).maps("s1", "tam")
    np.testing.assert_array_equal(tensors["maps.tam"], maps.final)
    np.testing.assert_array_equal(tensors["maps.cam"], maps.cam)
    np.testing.assert_array_equal(tensors["text_relevance"], maps.text_relevance)
    tags = {name: tag for name, (tag, _) in read_safetensors(exported)[0].items()}
    assert tags["hidden"] == "BF16" and tags["lm_head_rows"] == "BF16", "bf16 stays bf16 bits in the file"
    np.testing.assert_array_equal(tensors["hidden"], open_run(run).sample("s1").hidden)
    assert tensors["maps.tam"].shape == (20, 30 + 16) and tensors["vision_grids"].tolist() == [[1, 5, 6], [1, 4, 4]]

    again = tmp_path / "again"
    tamx_cli("import", exported, "--out", again)
    np.testing.assert_array_equal(open_run(again).maps("s1", "tam").final, maps.final)
    np.testing.assert_array_equal(open_run(again).sample("s1").hidden, open_run(run).sample("s1").hidden)


def test_a_file_with_only_the_required_tensors_imports_and_explains(tmp_path):
    sample = synthetic_sample("ignored", grids=[(1, 6, 7)], top_k=0)
    rows, _ = sample.lm_head.weights(sample.lm_head.ids)
    minimal = {
        "hidden": sample.hidden,
        "input_ids": sample.input_ids,
        "lm_head_ids": sample.lm_head.ids,
        "lm_head_rows": rows,
        "vision_starts": np.array([sample.vision_blocks[0].start]),
        "vision_grids": np.array([[1, 6, 7]]),
        "answer_positions": sample.answer_positions,
        "context_positions": sample.context_positions,
    }
    save_file(minimal, str(tmp_path / "my sample.safetensors"))
    run = tmp_path / "run"
    tamx_cli("import", tmp_path / "my sample.safetensors", "--out", run)
    tamx_cli("explain", run, "--quiet")
    stored = open_run(run)
    assert stored.sample_ids() == ["my_sample"]
    assert stored.maps("my_sample").final.shape == (20, 42)
    tamx_cli("export", run, "--out", tmp_path / "back.safetensors")  # one sample: --sample optional


def test_workers_and_sample_selection(run_path, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_path, copy)
    tamx_cli("explain", run_path, "--quiet")
    tamx_cli("explain", copy, "--workers", "2", "--samples", "img,video", "--quiet")
    one, two = open_run(run_path), open_run(copy)
    for sample_id in ("img", "video"):
        np.testing.assert_array_equal(one.maps(sample_id).final, two.maps(sample_id).final)
    assert two.variants("multi") == []


def test_worker_processes_load_the_chosen_filter_and_agree_with_one_process(run_path, tmp_path):
    """--workers 2 forks after loading the kernels of the chosen filter (here not the default
    one): the maps equal one process's, bit for bit."""
    copy = tmp_path / "copy"
    shutil.copytree(run_path, copy)
    settings = ("--filter", "median", "--kernel-size", "5", "--variant", "m5", "--quiet")
    tamx_cli("explain", run_path, *settings)
    tamx_cli("explain", copy, "--workers", "2", *settings)
    one, two = open_run(run_path), open_run(copy)
    assert two.sample_ids() == one.sample_ids() and len(one.sample_ids()) == 3
    for sample_id in one.sample_ids():
        np.testing.assert_array_equal(one.maps(sample_id, "m5").final, two.maps(sample_id, "m5").final)
        np.testing.assert_array_equal(one.maps(sample_id, "m5").eci, two.maps(sample_id, "m5").eci)


def test_a_run_of_many_samples_stores_the_maps_of_a_run_of_one(run_path, tmp_path, monkeypatch):
    """From COMPILED_FILTER_FROM samples a run filters with the numba twin of the default filter
    (here from 2, with --workers 2 forking after it loads): every stored map equals, bit for bit,
    the one a run of that sample alone stores with the numpy filter."""
    import tamx.pipeline.explain

    import tamx.filters

    copy = tmp_path / "copy"
    shutil.copytree(run_path, copy)
    monkeypatch.setattr(tamx.filters, "_compiled_3x3", None)  # restored after the test
    ids = open_run(run_path).sample_ids()
    for sample_id in ids:
        tamx_cli("explain", run_path, "--samples", sample_id, "--quiet")
    assert tamx.filters._compiled_3x3 is None
    monkeypatch.setattr(tamx.pipeline.explain, "COMPILED_FILTER_FROM", 2)
    tamx_cli("explain", copy, "--workers", "2", "--quiet")
    assert tamx.filters._compiled_3x3 is not None
    one, many = open_run(run_path), open_run(copy)
    for sample_id in ids:
        a, b = one.maps(sample_id), many.maps(sample_id)
        for name in ("final", "eci", "candidate_maps", "prompt_maps"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None) and (x is None or x.tobytes() == y.tobytes()), (sample_id, name)


def test_worker_processes_are_spawned_where_fork_is_not_used(run_path, tmp_path, monkeypatch):
    """Off Linux (macOS, Windows) the workers are spawned: each imports tamx and opens the run itself."""
    from tamx.pipeline.explain import explain_run

    copy = tmp_path / "copy"
    shutil.copytree(run_path, copy)
    tamx_cli("explain", run_path, "--quiet")
    monkeypatch.setattr(sys, "platform", "darwin")
    report = explain_run(copy, workers=2)
    assert sorted(report.done) == ["img", "multi", "video"] and not report.failed
    for sample_id in report.done:
        np.testing.assert_array_equal(open_run(run_path).maps(sample_id).final, open_run(copy).maps(sample_id).final)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_explain_keeps_freed_memory_for_the_next_sample_on_glibc():
    from tamx.pipeline.explain import keep_freed_memory

    assert keep_freed_memory() is True


def test_rerun_skips_and_conflicting_settings_need_overwrite(run_path):
    tamx_cli("explain", run_path, "--quiet")
    assert "3 already stored" in tamx_cli("explain", run_path).output
    result = tamx_cli("explain", run_path, "--variant", "tam", "--kernel-size", "5", "--quiet", ok=False)
    assert result.exit_code == 1
    assert "variant 'tam' is stored with other settings" in result.output and "--overwrite" in result.output
    tamx_cli("explain", run_path, "--variant", "tam", "--kernel-size", "5", "--overwrite", "--quiet")
    assert open_run(run_path).maps("img").settings["kernel_size"] == 5


def test_explain_goes_on_past_a_damaged_sample(run_path):
    data = run_path / "samples" / "multi" / "sample.0"
    data.write_bytes(data.read_bytes()[:100])
    result = tamx_cli("explain", run_path, "--quiet", ok=False)
    assert result.exit_code == 1
    assert "1 sample(s) failed" in result.output and "sample 'multi', field 'hidden'" in result.output
    run = open_run(run_path)
    assert run.variants("img") == ["tam"] and run.variants("video") == ["tam"]


def test_bad_input_files_are_listed_and_the_rest_imports(tmp_path, sample_files):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    partial = tmp_path / "partial.safetensors"
    tensors, _ = read_safetensors(sample_files[0])
    del tensors["vision_grids"]
    Path(partial).write_bytes(safetensors_bytes(tensors, {}))
    result = tamx_cli("import", junk, partial, sample_files[1], "--out", tmp_path / "run", ok=False)
    assert result.exit_code == 1
    assert "junk.safetensors: not a safetensors file" in result.output
    assert "produce one with `tamx export`" in result.output
    assert "field 'vision_grids'" in result.output and "lacks required tensor" in result.output
    assert open_run(tmp_path / "run").sample_ids() == ["s1"]


def test_cli_errors_are_one_line_messages(run_path, tmp_path):
    result = tamx_cli("export", run_path, "--out", tmp_path / "x.safetensors", ok=False)
    assert result.exit_code == 1 and "holds 3 samples; choose one with --sample" in result.output
    result = tamx_cli("explain", run_path, "--samples", "img,nope", ok=False)
    assert "no complete sample(s) nope" in result.output
    result = tamx_cli("explain", run_path, "--kernel-size", "4", ok=False)
    assert "kernel size must be odd" in result.output
    result = tamx_cli("info", tmp_path, ok=False)
    assert "not a tamx run store" in result.output
    assert "Traceback" not in result.output


def test_info_reports_incomplete_samples_and_json(run_path):
    (run_path / "samples" / "half").mkdir()
    (run_path / "samples" / "half" / "sample.0").write_bytes(b"TAMXOBJ2 killed mid-write")
    out = tamx_cli("info", run_path).output
    assert "1 incomplete" in out and "half" in out
    summary = json.loads(tamx_cli("info", run_path, "--json").output)
    assert summary["incomplete"] == ["half"] and [s["id"] for s in summary["samples"]] == ["img", "multi", "video"]
    assert summary["model"]["dtype"] == "bfloat16"


def test_console_script_is_installed():
    beside = Path(sys.executable).parent / "tamx"
    exe = str(beside) if beside.exists() else shutil.which("tamx")
    assert exe, "the tamx console script is missing: install the package (pip install -e .)"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("explain", "export", "import", "info"):
        assert command in out


def test_import_refuses_a_grid_that_disagrees_with_its_block(tmp_path, sample_files):
    tensors, metadata = read_safetensors(sample_files[0])
    tensors["vision_grids"] = ("I64", np.array([[1, 9, 12]]))  # 108 cells for 117 placeholders
    Path(tmp_path / "short.safetensors").write_bytes(safetensors_bytes(tensors, metadata))
    Path(tmp_path / "bare.safetensors").write_bytes(
        safetensors_bytes(tensors, {})
    )  # no run metadata: no special-token roles
    result = tamx_cli(
        "import", tmp_path / "short.safetensors", tmp_path / "bare.safetensors", "--out", tmp_path / "run", ok=False
    )
    assert (
        "sample 's0', field 'vision_grids'" in result.output and "sample 'bare', field 'vision_grids'" in result.output
    )
    assert "108 cells but the block holds 117 image placeholder tokens" in result.output
    assert not (tmp_path / "run").exists(), "no run is created when every file fails"
