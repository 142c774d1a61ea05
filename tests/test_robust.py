"""Bad input and faults through the command line (issue 15): every case ends in a one-line
message and a non-zero exit, never a traceback. No model and no torch here (the encode
cases are in test_robust_encode.py).

Classes: the error path itself, identifiers (4), eval inputs (6), disk full (7) and
unbounded settings (8).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file
from tamx.pipeline.cli import main
from tamx.pipeline.files import write_text
from tamx.pipeline.interchange import export_sample

from tamx import create_run, open_run
from tamx.datasets import load_dataset
from tamx.errors import DiskFullError, SampleError, TamxError
from tamx.interchange import read_metadata
from tamx.records import check_name
from tamx.synthetic import synthetic_run_info, synthetic_sample

ROOT = Path(__file__).resolve().parents[1]


def tamx_cli(*args):
    """Run the command line in-process; an exception escaping it fails the test."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def refused(result, *expected: str, code: int = 1) -> str:
    """Assert a failure: the exit status, each expected text, no traceback, the error on one line."""
    output = result.output
    assert result.exit_code == code, output
    assert "Traceback" not in output, output
    for text in expected:
        assert text in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    if code != 0 and errors:
        assert len(errors) == 1, output
    return output


# ---------------------------------------------------------------- the error path


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


# ---------------------------------------------------------------- class 4: identifiers


def _file_with_id(tmp_path: Path, sample_id: str, name: str = "s") -> Path:
    """A sample file whose metadata names `sample_id` (as a hand-edited or hostile file would)."""
    source = tmp_path / f"{name}-source.safetensors"
    export_sample(source, synthetic_sample("ok", grids=[(1, 4, 5)]), synthetic_run_info())
    meta = read_metadata(source)
    meta["sample_id"] = sample_id
    path = tmp_path / f"{name}.safetensors"
    save_file(load_file(str(source)), str(path), metadata={"tamx": json.dumps(meta)})
    return path


HOSTILE_IDS = {
    "x" * 300: "is 300 characters long, over the limit of 200",
    "x" * 201: "is 201 characters long, over the limit of 200",
    ".": "starts with '.'",
    "..": "starts with '.'",
    "../escape": "holds '/'",
    "a/b": "holds '/'",
    "a\\b": "holds '\\\\'",
    "-rf": "starts with '-'",
    "name.": "ends with '.'",
    "with space": "holds ' '",
    "tab\there": "holds '\\t'",
    "café": "holds 'é'",
    "CON": "is a reserved name",
    "nul.txt": "is a reserved name",
    "Lpt1": "is a reserved name",
    "zarr.json": "is a reserved name",
    "a@b": "holds '@'",
}


@pytest.mark.parametrize("sample_id", list(HOSTILE_IDS), ids=lambda s: s[:12])
def test_import_refuses_hostile_ids_with_the_rule(tmp_path, sample_id):
    good = _file_with_id(tmp_path, "fine", "good")
    bad = _file_with_id(tmp_path, sample_id, "bad")
    run = tmp_path / "run"
    out = refused(tamx_cli("import", good, bad, "--out", run, "--quiet"), "1 file(s) failed", HOSTILE_IDS[sample_id])
    assert "sample ids use letters, digits" in out and "already there" not in out
    assert open_run(run).sample_ids() == ["fine"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["fine"], "nothing else written"


def test_a_long_id_is_shown_cut_short(tmp_path):
    out = refused(tamx_cli("import", _file_with_id(tmp_path, "y" * 300), "--out", tmp_path / "run"))
    assert "y" * 41 not in out and "(300 characters)" in out


def test_the_longest_allowed_id_round_trips(tmp_path):
    sample_id = "z" * 200
    run = tmp_path / "run"
    tamx_cli("import", _file_with_id(tmp_path, sample_id), "--out", run, "--quiet")
    assert open_run(run).sample_ids() == [sample_id]
    assert tamx_cli("explain", run, "--quiet", "--samples", sample_id).exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        ("explain", "{run}", "--variant", ".."),
        ("explain", "{run}", "--variant", "../../x"),
        ("explain", "{run}", "--variant", "v" * 300),
        ("explain", "{run}", "--variant", "zarr.json"),
        ("explain", "{run}", "--samples", "img,../video"),
        ("render", "{run}", "--out", "{tmp}/r", "--samples", ".."),
        ("eval", "{run}", "--dataset", "folder", "--data", "{tmp}", "--samples", "a b"),
        ("export", "{run}", "--sample", ".", "--out", "{tmp}/x.safetensors"),
    ],
    ids=lambda a: "-".join(a[:1] + a[2:3]),
)
def test_id_options_are_checked_before_any_work(run_path, tmp_path, args):
    args = [a.format(run=run_path, tmp=tmp_path) for a in args]
    out = refused(tamx_cli(*args), "Invalid value", "use letters, digits", code=2)
    assert "Traceback" not in out
    assert open_run(run_path).variants("img") == []


def test_the_python_api_refuses_hostile_names_too(run_path):
    run = open_run(run_path)
    assert ".." not in run and "x" * 300 not in run and "zarr.json" not in run
    with pytest.raises(TamxError, match=r"variant name '\.\.' starts with '\.'"):
        run.maps("img", "..")
    with pytest.raises(SampleError, match="over the limit of 200"):
        run.sample("x" * 300)
    assert check_name("tam-k5", "variant name") == "tam-k5"


# ---------------------------------------------------------------- class 6: eval inputs


@pytest.fixture
def eval_case(tmp_path):
    """A run of two one-image samples explained as `cam`, and a folder dataset with their masks."""
    run_path = tmp_path / "run"
    run = create_run(run_path, synthetic_run_info())
    data = tmp_path / "data"
    data.mkdir()
    entries = []
    for seed, name in enumerate(("first", "second")):
        run.write_sample(synthetic_sample(name, grids=[(1, 6, 8)], seed=seed))
        cv2.imwrite(str(data / f"{name}.jpg"), np.zeros((48, 64, 3), np.uint8))
        label = np.zeros((48, 64), np.uint8)
        label[10:30, 20:40] = 1
        cv2.imwrite(str(data / f"{name}.png"), label)
        entries.append({"id": name, "image": f"{name}.jpg", "label": f"{name}.png", "categories": {"dog": 1}})
    (data / "anno.json").write_text(json.dumps(entries))
    assert tamx_cli("explain", run_path, "--no-eci", "--filter", "none", "--quiet").exit_code == 0
    return run_path, data, entries


def _eval(run_path, data, tmp_path):
    return tamx_cli("eval", run_path, "--dataset", "folder", "--data", data, "--out", tmp_path / "scores", "--quiet")


def test_eval_baseline_scores_both_samples(eval_case, tmp_path):
    run_path, data, _ = eval_case
    result = _eval(run_path, data, tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "scores" / "summary.json").read_text())["variants"]["cam"]["samples"] == 2


@pytest.mark.parametrize("shape", [(24, 32), (48, 63), (64, 48)])
def test_a_mask_of_another_size_than_its_image_fails_that_sample(eval_case, tmp_path, shape):
    run_path, data, _ = eval_case
    cv2.imwrite(str(data / "second.png"), np.ones(shape, np.uint8))
    out = refused(_eval(run_path, data, tmp_path), "1 sample(s) failed", "second: ", f"is {shape[0]}x{shape[1]} pixels")
    assert "its image" in out and "48x64" in out and "does not resize" in out
    assert json.loads((tmp_path / "scores" / "summary.json").read_text())["variants"]["cam"]["samples"] == 1


def test_masks_of_a_mask_folder_must_agree_in_size(eval_case, tmp_path):
    run_path, data, entries = eval_case
    folder = data / "second-masks"
    folder.mkdir()
    cv2.imwrite(str(folder / "dog.png"), np.full((48, 64), 255, np.uint8))
    cv2.imwrite(str(folder / "cat.png"), np.full((40, 64), 255, np.uint8))
    entries[1].update(label="second-masks", categories={"dog": 1, "cat": 2})
    (data / "anno.json").write_text(json.dumps(entries))
    refused(_eval(run_path, data, tmp_path), "second: ", "cat.png is 40x64 pixels but its image")
    (data / "second.jpg").unlink()  # without the image, the first mask sets the size
    with pytest.raises(TamxError, match=r"cat\.png is 40x64 pixels but the mask .*dog\.png is 48x64"):
        load_dataset("folder", data)[1].masks()


def test_a_missing_or_unreadable_image_fails_that_sample(eval_case, tmp_path):
    run_path, data, _ = eval_case
    (data / "second.jpg").unlink()
    refused(_eval(run_path, data, tmp_path), "second: its image", "is missing")
    (data / "second.jpg").write_bytes(b"not a jpeg")
    refused(_eval(run_path, data, tmp_path), "second: cannot read the image")


@pytest.mark.parametrize(
    "anno, expected",
    [
        (b"[{not json", "is not valid JSON (line 1, column 3"),
        (b'[{"id": "caf\xe9"}]', "is not UTF-8 text"),
        (b"", "is not valid JSON"),
        (b'{"first": 1}', "must hold a list of entries"),
        (b"[42]", "entry 0 is not [image path, description, label path, {name: id}]"),
        (b'[{"image": "a.jpg"}]', "entry 0 lacks 'label'"),
        (b'[{"image": 5, "label": "a.png", "categories": {}}]', "the image path must be a non-empty string"),
        (b'[{"image": "a.jpg", "label": null, "categories": {}}]', "the label path must be a non-empty string"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": [1]}]', "categories must map names to label ids"),
        (
            b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": "one"}}]',
            "category id 'one' is not an integer",
        ),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": 1.5}}]', "category id 1.5 is not an integer"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": true}}]', "category id True is not an integer"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": -1}}]', "category id -1 is not an integer"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": 70000}}]', "from 0 to 65535"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": null}}]', "category id None is not an integer"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {}, "captions": [1]}]', "captions must be a list"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {}, "id": [1]}]', "the id must be a string"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {}, "prompt": 3}]', "the prompt must be a string"),
        (b'[["a.jpg", 7, "a.png", {"dog": 1}]]', "captions must be a list of strings"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {}, "id": "../x"}]', "the id holds '/'"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {}, "id": ".."}]', "the id starts with '.'"),
    ],
)
def test_malformed_anno_json_is_one_line(eval_case, tmp_path, anno, expected):
    run_path, data, _ = eval_case
    (data / "anno.json").write_bytes(anno)
    refused(_eval(run_path, data, tmp_path), expected, "anno.json")


@pytest.fixture
def coco_case(tmp_path):
    data = tmp_path / "coco"
    for folder in ("annotations", "image", "seg_label"):
        (data / folder).mkdir(parents=True)
    (data / "annotations" / "captions_val2014.json").write_text(json.dumps({"annotations": []}))
    run = tmp_path / "run"
    create_run(run, synthetic_run_info()).write_sample(synthetic_sample("000000000001", grids=[(1, 4, 4)]))
    return run, data


@pytest.mark.parametrize(
    "instances, expected",
    [
        ({"images": [], "categories": [{"id": "x", "name": "dog"}]}, "categories[0]: the category id 'x'"),
        ({"images": [], "categories": [{"id": 2.5, "name": "dog"}]}, "the category id 2.5 is not an integer"),
        ({"images": [], "categories": [{"id": 2}]}, "categories[0]: name must be a non-empty string"),
        ({"images": [], "categories": ["dog"]}, "categories[0] must be an object"),
        ({"images": [{"id": "one"}], "categories": []}, "images[0]: the id 'one' is not a non-negative integer"),
        ({"images": [{"id": 1}]}, "must be an object with the lists 'images' and 'categories'"),
        ([1, 2], "must be an object with the lists"),
    ],
)
def test_malformed_coco_annotations_are_one_line(coco_case, tmp_path, instances, expected):
    run, data = coco_case
    (data / "annotations" / "instances_minival2014.json").write_text(json.dumps(instances))
    refused(tamx_cli("eval", run, "--dataset", "coco", "--data", data, "--quiet"), expected)


def test_coco_captions_of_the_wrong_type_are_one_line(coco_case):
    run, data = coco_case
    (data / "annotations" / "instances_minival2014.json").write_text(json.dumps({"images": [], "categories": []}))
    (data / "annotations" / "captions_val2014.json").write_text(json.dumps({"annotations": [{"caption": 5}]}))
    refused(
        tamx_cli("eval", run, "--dataset", "coco", "--data", data), "annotations[0] needs an image_id and a caption"
    )


# ---------------------------------------------------------------- class 7: disk full


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


# ---------------------------------------------------------------- class 8: unbounded settings


@pytest.fixture
def grid_run(tmp_path):
    path = tmp_path / "run"
    run = create_run(path, synthetic_run_info())
    run.write_sample(synthetic_sample("wide", grids=[(1, 17, 23)], n_answer=2, top_k=0))
    run.write_sample(synthetic_sample("small", grids=[(1, 5, 6), (1, 3, 3)], n_answer=2, top_k=0))
    return path


@pytest.mark.parametrize("kernel, largest", [(101, 23), (25, 23), (1001, 23)])
def test_a_kernel_wider_than_every_grid_is_refused_before_starting(grid_run, kernel, largest):
    out = refused(tamx_cli("explain", grid_run, "--kernel-size", kernel, "--no-prompt", "--quiet"))
    assert f"--kernel-size {kernel} is wider than every vision grid" in out
    assert "17x23 in sample 'wide'" in out and f"use an odd size up to {largest}" in out
    assert open_run(grid_run).variants("small") == [], "refused before any sample"


def test_the_bound_is_that_of_the_selected_samples(grid_run):
    out = refused(tamx_cli("explain", grid_run, "--samples", "small", "--kernel-size", "9", "--quiet"))
    assert "the largest is 5x6 in sample 'small'" in out and "up to 5" in out
    result = tamx_cli("explain", grid_run, "--samples", "small", "--kernel-size", "5", "--variant", "k5", "--quiet")
    assert result.exit_code == 0, result.output
    assert open_run(grid_run).maps("small", "k5").settings["kernel_size"] == 5


def test_a_kernel_is_not_bounded_without_a_filter(grid_run):
    result = tamx_cli("explain", grid_run, "--kernel-size", "101", "--filter", "none", "--no-eci", "--quiet")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "option, value, expected, code",
    [
        ("--kernel-size", "4", "kernel size must be odd", 1),
        ("--kernel-size", "0", "kernel size must be odd", 1),
        ("--kernel-size", "-3", "kernel size must be odd", 1),
        ("--kernel-size", "three", "is not a valid integer", 2),
        ("--workers", "0", "is not in the range", 2),
        ("--workers", "100000", "is not in the range", 2),
    ],
)
def test_explain_option_bounds(grid_run, option, value, expected, code):
    refused(tamx_cli("explain", grid_run, option, value, "--quiet"), expected, code=code)


def test_render_token_bounds(run_path, tmp_path):
    tamx_cli("explain", run_path, "--quiet", "--samples", "img")
    refused(
        tamx_cli(
            "render", run_path, "--out", tmp_path / "r", "--samples", "img", "--png", "--tokens", "999", "--quiet"
        ),
        "has answer tokens 0..19; --tokens asked for [999]",
    )
    refused(
        tamx_cli("render", run_path, "--out", tmp_path / "r", "--png", "--tokens", "x"), "'x' is not an integer", code=2
    )


def test_errors_cross_process_boundaries_intact():
    """explain --workers N raises a full disk from a worker process: the message survives pickling."""
    import pickle

    for error in (DiskFullError("the maps 'tam' of sample 'a'"), SampleError("a", "hidden", "is damaged")):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)


def test_an_os_refusal_while_exporting_is_the_users_to_fix(run_path, tmp_path):
    # tamx writes safetensors itself (bf16 stays bf16): the refusal is a plain OSError naming the file
    out = refused(tamx_cli("export", run_path, "--sample", "img", "--out", "/proc/x.safetensors"))
    assert "internal error" not in out and "/proc/x.safetensors" in out and len(out.strip().splitlines()) == 1


def test_stored_ids_from_before_the_portable_rule_stay_readable(run_path):
    """'aux' and 'img.' are refused as new ids (Windows cannot hold them) but a run that has them reads."""
    for old in ("aux", "img."):
        shutil.copytree(run_path / "samples" / "img", run_path / "samples" / old)
    assert tamx_cli("explain", run_path, "--samples", "aux,img.", "--quiet").exit_code == 0
    assert open_run(run_path).variants("aux") == ["tam"] and "img." in tamx_cli("info", run_path).output
    sample = open_run(run_path).sample("aux")
    with pytest.raises(SampleError, match="is a reserved name"):
        open_run(run_path, mode="a").write_sample(sample, overwrite=True)
