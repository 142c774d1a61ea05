"""Issue 15, classes 1-3, through the command line: damaged store metadata, interchange files
that lie, non-finite LM-head rows. Each ends in a one-line message naming what is wrong (exit
1, no traceback) and leaves everything else usable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tamx.pipeline.interchange import export_sample

from tamx import open_run
from tamx.interchange import read_safetensors, safetensors_bytes
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .refusals import tamx_output

# ---------------------------------------------------------------------------- class 1: damaged store metadata


@pytest.mark.parametrize(
    ("root", "message"),
    [
        (b"[1, 2]", "damaged: a JSON list, not an object"),
        (b"\xff\xfe\x00garbage", "damaged: not UTF-8 JSON"),
        (b'{"schema_version": 2, "run"', "damaged: not UTF-8 JSON"),
        (b'{"schema_version": "2", "run": {}}', "schema_version is '2' (str)"),
        (b'{"schema_version": 2.0, "run": {}}', "schema_version is 2.0 (float)"),
        (b'{"schema_version": 7, "run": {}}', "newer than this tamx reads (2.x): upgrade tamx"),
        (b'{"schema_version": 2}', "'run' must be an object"),
        (b'{"schema_version": 2, "run": {"special_tokens": {"image_token": 1.5}}}', "maps 'image_token' to 1.5"),
        (b'{"schema_version": 2, "run": {"extra": "x"}}', "field 'extra' must be an object"),
    ],
)
@pytest.mark.parametrize("command", ["info", "explain", "render"])
def test_damaged_run_metadata_is_one_line(run_path, tmp_path, root, message, command):
    (run_path / "tamx-run.json").write_bytes(root)
    args = [command, run_path] + (["--out", tmp_path / "pages"] if command == "render" else [])
    out = tamx_output(*args, code=1)
    assert message in out and len(out.strip().splitlines()) == 1


COMMIT_DAMAGE = {
    "list": (lambda c: [c], "JSON list, not an object"),
    "garbled": (lambda c: '{"slot": 0,', "not valid JSON"),
    "no fields": (lambda c: {k: v for k, v in c.items() if k != "fields"}, "lacks 'fields'"),
    "schema string": (lambda c: {**c, "schema": "2.0"}, "no valid schema version"),
    "newer major": (lambda c: {**c, "schema": [3, 0]}, "store schema 3.0"),
    "wrong slot": (lambda c: {**c, "slot": 5}, "data object samples/multi/sample.5 is missing"),
    "hidden entry": (lambda c: {**c, "fields": {**c["fields"], "hidden": []}}, "field 'hidden'"),
    "no dtype key": (
        lambda c: {**c, "json": {k: v for k, v in c["json"].items() if k != "hidden_dtype"}},
        "hidden_dtype",
    ),
    "blocks string": (lambda c: {**c, "json": {**c["json"], "vision_blocks": "x"}}, "vision_blocks"),
    "block garbage": (lambda c: {**c, "json": {**c["json"], "vision_blocks": [{"grid": 1}]}}, "vision_blocks"),
    "media keys": (lambda c: {**c, "json": {**c["json"], "media": [{}]}}, "media"),
}


@pytest.mark.parametrize("damage", sorted(COMMIT_DAMAGE))
def test_a_damaged_sample_commit_is_reported_and_the_others_are_explained(run_path, damage):
    edit, message = COMMIT_DAMAGE[damage]
    path = run_path / "samples" / "multi" / "sample.json"
    edited = edit(json.loads(path.read_text()))
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    info = json.loads(tamx_output("info", run_path, "--json"))
    shown = {s["id"] for s in info["samples"]} | set(info["damaged"])
    assert shown == {"img", "multi", "video"}, "no sample vanishes"
    out = tamx_output("explain", run_path, "--quiet", code=1)
    assert "1 sample(s) failed" in out and "sample 'multi'" in out and message in out
    run = open_run(run_path)
    assert run.variants("img") == ["tam"] and run.variants("video") == ["tam"]


def test_a_deleted_commit_is_listed_as_incomplete_by_info_and_explain(run_path):
    (run_path / "samples" / "multi" / "sample.json").unlink()
    out = tamx_output("info", run_path)
    assert "2 complete, 1 incomplete" in out and "multi" in out.split("incomplete (")[1]
    out = tamx_output("explain", run_path)
    assert "1 incomplete sample(s) not explained (multi)" in out


def test_a_deleted_data_object_or_damaged_maps_name_the_sample(run_path, tmp_path):
    tamx_output("explain", run_path, "--quiet")
    (run_path / "samples" / "video" / "sample.0").unlink()
    maps_commit = run_path / "samples" / "img" / "maps" / "tam.json"
    maps_commit.write_text(maps_commit.read_text()[:40])
    out = tamx_output("export", run_path, "--sample", "video", "--out", tmp_path / "v.safetensors", code=1)
    assert "sample 'video', field 'hidden'" in out and "sample.0 is missing" in out
    out = tamx_output("export", run_path, "--sample", "img", "--out", tmp_path / "i.safetensors", code=1)
    assert "sample 'img', field 'maps/tam'" in out and "not valid JSON" in out
    assert "tam" in json.loads(tamx_output("info", run_path, "--json"))["variants"], "a damaged variant is still listed"


# ---------------------------------------------------------------------------- class 2: interchange files that lie


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.safetensors"
    sample = synthetic_sample("s0", grids=[(1, 5, 6)], dtype="bfloat16", seed=3)
    from tamx import explain_sample

    export_sample(path, sample, synthetic_run_info(dtype="bfloat16"), explain_sample(sample))
    return path


def lie(good, tmp_path, name, change):
    tensors, metadata = read_safetensors(good)
    meta = json.loads(metadata["tamx"])
    change(tensors, meta)
    path = tmp_path / f"{name}.safetensors"
    Path(path).write_bytes(safetensors_bytes(tensors, {"tamx": json.dumps(meta)} if meta is not None else {}))
    return path


def _set(name, tag, value_of):
    def change(tensors, meta):
        tensors[name] = (tag, value_of(tensors[name][1], tensors))

    return change


def _meta(key, value):
    def change(tensors, meta):
        meta[key] = value

    return change


def _start_of_block(tensors):
    return int(tensors["vision_starts"][1][0])


LIES = {
    "int hidden": (_set("hidden", "I32", lambda v, t: v.astype(np.int32)), "field 'hidden'", "must hold floats"),
    "float input ids": (_set("input_ids", "F32", lambda v, t: v.astype(np.float32)), "'input_ids'", "integers"),
    "float positions": (
        _set("answer_positions", "F64", lambda v, t: v.astype(np.float64)),
        "'answer_positions'",
        "must hold integers",
    ),
    "grids [B, 2]": (_set("vision_grids", "I64", lambda v, t: v[:, :2]), "'vision_grids'", "[B, 3]"),
    "grids 1-D": (_set("vision_grids", "I64", lambda v, t: v.ravel()), "'vision_grids'", "2-D"),
    "two grids one start": (
        _set("vision_grids", "I64", lambda v, t: np.vstack([v, v])),
        "'vision_grids'",
        "2 grids for 1 vision_starts",
    ),
    "answer in a block": (
        _set("answer_positions", "I64", lambda v, t: np.r_[_start_of_block(t) + 2, v[1:]]),
        "'answer_positions'",
        "before the prompt",
    ),
    "context in a block": (
        _set("context_positions", "I64", lambda v, t: np.r_[_start_of_block(t) + 2, v]),
        "'context_positions'",
        "inside vision block 0",
    ),
    "context overlaps answer": (
        _set("context_positions", "I64", lambda v, t: np.union1d(v, t["answer_positions"][1][:3])),
        "'context_positions'",
        "also answer positions",
    ),
    "position past the end": (
        _set("answer_positions", "I64", lambda v, t: np.r_[v[:-1], len(t["input_ids"][1]) + 4]),
        "'answer_positions'",
        "must lie in",
    ),
    "maps of the wrong shape": (_set("maps.tam", "F32", lambda v, t: v[:, :-2]), "'maps/tam/tam'", "V = 30"),
    "maps of another sample": (
        _set("maps.cam", "F32", lambda v, t: v[:-1]),
        "'maps/",
        "N = 20",
    ),
    "partial maps": (lambda t, m: t.pop("maps.eci"), "'maps.eci'", "maps are partial"),
    "metadata is a list": (None, "", "'tamx' metadata is a JSON list, not an object"),
    "meta is a string": (_meta("meta", "x"), "'meta'", "must be an object"),
    "run is a list": (_meta("run", [1]), "'run'", "must be an object"),
    "messages is a number": (_meta("messages", 5), "'messages'", "must be a list"),
    "media entry without keys": (_meta("media", [{"kind": "image"}]), "'media'", "entry 0"),
    "tokens not strings": (_meta("tokens", list(range(300))), "'tokens'", "must hold strings"),
    "candidate tokens not strings": (_meta("candidate_tokens", [[1, 2, 3]] * 20), "'candidate_tokens'", "strings"),
    "blocks not objects": (_meta("vision_blocks", [1]), "'vision_blocks'", "list of objects"),
    "special tokens not ids": (
        _meta("run", {"special_tokens": {"image_token": "x"}}),
        "",
        "'special_tokens' maps 'image_token' to 'x'",
    ),
    "sample id a number": (_meta("sample_id", 5), "'sample_id'", "must be a string"),
    "newer schema": (_meta("schema_version", 9), "'schema_version'", "schema 9"),
    "candidate ids wrong N": (_set("candidate_ids", "I64", lambda v, t: v[:-1]), "'candidate_ids'", "N = 20"),
    "lm head rows too few": (
        _set("lm_head_rows", "BF16", lambda v, t: v[:-1]),
        "'lm_head_rows'",
        "with U =",
    ),
    "duplicate lm head ids": (
        _set("lm_head_ids", "I64", lambda v, t: np.r_[v[:-1], v[0]]),
        "'lm_head_ids'",
        "unique",
    ),
}


@pytest.mark.parametrize("case", sorted(LIES))
def test_an_interchange_file_that_lies_fails_alone_and_stores_nothing(good_file, tmp_path, case):
    change, field, message = LIES[case]
    if change is None:  # metadata that is a JSON list
        tensors, _ = read_safetensors(good_file)
        bad = tmp_path / "bad.safetensors"
        Path(bad).write_bytes(safetensors_bytes(tensors, {"tamx": "[1, 2]"}))
    else:
        bad = lie(good_file, tmp_path, "bad", change)
    other = lie(good_file, tmp_path, "other", _meta("sample_id", "other"))
    out = tamx_output("import", bad, other, "--out", tmp_path / "run", code=1)
    assert "1 file(s) failed" in out and field in out and message in out, out
    assert open_run(tmp_path / "run").sample_ids() == ["other"], "the lying file stores nothing"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not a safetensors file (empty)"),
        (b"plain text, not tensors", "not a safetensors file (it does not begin with a header length"),
        ((4).to_bytes(8, "little") + b"\xff\xfe\xfd\xfc", "not a safetensors file"),
        ((2).to_bytes(8, "little") + b"[]", "not a safetensors file"),
        ((10**9).to_bytes(8, "little") + b"{}", "over the format's limit"),
        ((40).to_bytes(8, "little") + b"{}", "header of 40 bytes runs past the end of the file"),
        ((4).to_bytes(8, "little") + b"{\xff\xfe}", "damaged safetensors file (its header is not UTF-8 JSON"),
        ((6).to_bytes(8, "little") + b'{"a":}', "damaged safetensors file (its header is not UTF-8 JSON"),
        (
            (62).to_bytes(8, "little") + b'{"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 99]}}',
            "lies outside the file",
        ),
    ],
)
def test_a_file_that_is_not_safetensors_is_named(tmp_path, raw, message):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(raw)
    out = tamx_output("import", path, "--out", tmp_path / "run", code=1)
    assert message in out and out.count(str(path)) == 1 and "Traceback" not in out, out


# ---------------------------------------------------------------------------- class 3: non-finite LM-head rows


def test_nonfinite_lm_head_rows_are_warned_and_counted_by_explain(good_file, tmp_path, caplog):
    def poison(tensors, meta):
        rows = tensors["lm_head_rows"][1].copy()
        answer_id = tensors["input_ids"][1][tensors["answer_positions"][1][0]]
        rows[np.searchsorted(tensors["lm_head_ids"][1], answer_id), :3] = 0x7FC0  # bf16 NaN
        tensors["lm_head_rows"] = ("BF16", rows)
        for name in [t for t in tensors if t.startswith("maps.") or t.endswith("_relevance")]:
            del tensors[name]

    path = lie(good_file, tmp_path, "nan", poison)
    run_path = tmp_path / "run"
    tamx_output("import", path, "--out", run_path, "--quiet")
    with caplog.at_level("WARNING"):
        tamx_output("explain", run_path, "--quiet")
    assert "3 non-finite LM-head value(s)" in caplog.text and "re-encode the sample" in caplog.text
    maps = open_run(run_path).maps("s0")
    assert maps.nonfinite_lm_head == 3 and np.isfinite(maps.final).all()


def test_unknown_tensors_and_metadata_of_a_newer_writer_are_named_and_ignored(good_file, tmp_path, caplog):
    def newer(tensors, meta):
        tensors["saliency"] = ("F32", np.zeros(3, np.float32))
        meta["schema_minor"] = 4
        meta["provenance"] = {"tool": "x"}

    path = lie(good_file, tmp_path, "newer", newer)
    with caplog.at_level("WARNING"):
        tamx_output("import", path, "--out", tmp_path / "run", "--quiet")
    assert "provenance, saliency" in caplog.text or "saliency, provenance" in caplog.text
    assert open_run(tmp_path / "run").sample_ids() == ["s0"]
