"""Sample ids and variant names: hostile ones (paths, reserved names, over 200 characters) are
refused with the rule from every way in (import, options, the Python API), the longest allowed
round-trips, and ids stored before the portable rule stay readable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.numpy import load_file, save_file
from tamx.pipeline.interchange import export_sample

from tamx import open_run
from tamx.errors import SampleError, TamxError
from tamx.interchange import read_metadata
from tamx.records import check_name
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .refusals import refused, tamx_cli


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


def test_stored_ids_from_before_the_portable_rule_stay_readable(run_path):
    """'aux' and 'img.' are refused as new ids (Windows cannot hold them) but a run that has them reads."""
    for old in ("aux", "img."):
        shutil.copytree(run_path / "samples" / "img", run_path / "samples" / old)
    assert tamx_cli("explain", run_path, "--samples", "aux,img.", "--quiet").exit_code == 0
    assert open_run(run_path).variants("aux") == ["tam"] and "img." in tamx_cli("info", run_path).output
    sample = open_run(run_path).sample("aux")
    with pytest.raises(SampleError, match="is a reserved name"):
        open_run(run_path, mode="a").write_sample(sample, overwrite=True)
