"""Issue 20, classes 8 and 9, through the command line: import validates the whole file before
writing anything (a failed file stores nothing, earlier samples keep their bytes), every
metadata value is checked against the field tables, a file that is not safetensors is named
once, and grids without placement are separate images (one ECI scale each)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tamx.pipeline.interchange import export_sample

from tamx import explain_sample, open_run
from tamx.interchange import read_safetensors, safetensors_bytes
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .conftest import folder_bytes
from .refusals import tamx_output


def rewrite(source: Path, path: Path, change) -> Path:
    """A copy of the sample file `source` with `change(tensors, meta)` applied."""
    tensors, metadata = read_safetensors(source)
    meta = json.loads(metadata["tamx"])
    change(tensors, meta)
    path.write_bytes(safetensors_bytes(tensors, {"tamx": json.dumps(meta)}))
    return path


@pytest.fixture
def stored(tmp_path):
    """A run holding samples "a" (with maps) and "b", and the exported file of "a"."""
    run = tmp_path / "run"
    info = synthetic_run_info(dtype="bfloat16")
    for seed, sample_id in enumerate("ab"):
        sample = synthetic_sample(sample_id, grids=[(1, 4, 5)], dtype="bfloat16", seed=seed)
        export_sample(tmp_path / f"{sample_id}.safetensors", sample, info, explain_sample(sample))
    tamx_output("import", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--out", run, "--quiet")
    tamx_output("export", run, "--sample", "a", "--out", tmp_path / "a-export.safetensors")
    return run, tmp_path / "a-export.safetensors"


def _meta(key, value):
    return lambda tensors, meta: meta.update({key: value})


def _maps_meta(key, value):
    return lambda tensors, meta: meta["maps"].update({key: value})


def _tensor(name, tag, value_of):
    return lambda tensors, meta: tensors.update({name: (tag, value_of(tensors[name][1]))})


def _block(key, value):
    return lambda tensors, meta: meta["vision_blocks"][0].update({key: value})


# Each case rewrites the exported file of sample "a" (same id: --overwrite would replace it).
HOSTILE = {
    "maps variant escapes": (_maps_meta("variant", "../evil"), "field 'maps'", "holds '/'"),
    "maps variant with a space": (_maps_meta("variant", "my maps"), "field 'maps'", "holds ' '"),
    "hidden_dtype int8": (_meta("hidden_dtype", "int8"), "field 'hidden_dtype'", "'int8', not one of"),
    "hidden_dtype a number": (_meta("hidden_dtype", 8), "field 'hidden_dtype'", "must be a string"),
    "lm_head_dtype contradicts BF16": (
        _meta("lm_head_dtype", "float16"),
        "field 'lm_head_dtype'",
        "stored as BF16",
    ),
    "schema_version a bool": (_meta("schema_version", True), "field 'schema_version'", "must be an integer"),
    "schema_minor a string": (_meta("schema_minor", "0"), "field 'schema_minor'", "must be an integer"),
    "format of another file": (_meta("format", "tamx-run"), "field 'format'", "not 'tamx-sample'"),
    "tokens an object": (_meta("tokens", {"a": 1}), "field 'tokens'", "must be a list"),
    "maps settings a list": (_maps_meta("settings", [1]), "field 'settings'", "must be an object"),
    "block media a string": (_block("media", "x"), "field 'vision_blocks'", "block 0: media must be an integer"),
    "block media 1.5": (_block("media", 1.5), "field 'vision_blocks'", "media must be an integer >= 0, got 1.5"),
    "block row_newline 'false'": (_block("row_newline", "false"), "field 'vision_blocks'", "must be true or false"),
    "block kind audio": (_block("kind", "audio"), "field 'vision_blocks'", "kind must be one of"),
    "block box a string": (_block("box", "0,0,1,1"), "field 'vision_blocks'", "box must be null or [x0"),
    "block grid of two": (_block("grid", [4, 5]), "field 'vision_blocks'", "grid must be [T, H, W]"),
    "block start disagrees": (_block("start", 99), "field 'vision_starts'", "make them agree"),
    "more blocks than grids": (
        lambda t, m: m["vision_blocks"].append(dict(m["vision_blocks"][0])),
        "field 'vision_blocks'",
        "describes 2 blocks for 1 vision_starts",
    ),
    "media entry without bytes": (
        lambda t, m: m.update(media=[*m["media"], {"item": 9, "kind": "image", "mime": "image/png"}]),
        "field 'media.1'",
        "has no bytes",
    ),
    "hidden 1-D": (_tensor("hidden", "BF16", lambda v: v.ravel()), "field 'hidden'", "shape"),
    "hidden as integers": (_tensor("hidden", "I16", lambda v: v.view(np.int16)), "field 'hidden'", "floats"),
    "hidden as F64": (_tensor("hidden", "F64", lambda v: v.astype(np.float64)), "field 'hidden'", "is F64"),
    "media frame a string": (
        lambda t, m: m["media"][0].update(frame="x"),
        "field 'media'",
        "frame (int or null)",
    ),
    "input ids as floats": (_tensor("input_ids", "F32", lambda v: v.astype(np.float32)), "'input_ids'", "integers"),
    "media bytes as I64": (_tensor("media.0", "I64", lambda v: v.astype(np.int64)), "'media.0'", "U8 bytes"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_failed_file_stores_nothing_and_earlier_samples_keep_their_bytes(stored, tmp_path, case):
    """The file names sample "a", already stored, and --overwrite is given: were anything
    written before the whole file was checked, "a" (or its maps) would change."""
    run, exported = stored
    change, field, message = HOSTILE[case]
    bad = rewrite(exported, tmp_path / "bad.safetensors", change)
    before = folder_bytes(run)
    out = tamx_output("import", bad, "--out", run, "--overwrite", code=1)
    assert "0 sample(s) imported" in out and "1 file(s) failed" in out
    failure = [line for line in out.splitlines() if str(bad) in line]
    assert len(failure) == 1 and out.count(str(bad)) == 1, out
    assert "sample 'a'" in failure[0] and field in failure[0] and message in failure[0], out
    assert folder_bytes(run) == before, "the failed file changed the run"


def test_a_failed_file_among_good_ones_leaves_the_rest_of_the_run_as_it_was(stored, tmp_path):
    """Good, bad, good in one call: the good ones are stored, the bad one (issue 20's case: maps
    whose variant name is refused) stores nothing, and the samples before the call keep their
    bytes."""
    run, exported = stored
    bad = rewrite(exported, tmp_path / "bad.safetensors", _maps_meta("variant", "../evil"))
    c = rewrite(exported, tmp_path / "c.safetensors", _meta("sample_id", "c"))
    d = rewrite(exported, tmp_path / "d.safetensors", _meta("sample_id", "d"))
    before = folder_bytes(run)
    out = tamx_output("import", c, bad, d, "--out", run, "--overwrite", code=1)
    assert "2 sample(s) imported" in out and "1 file(s) failed" in out
    assert open_run(run).sample_ids() == ["a", "b", "c", "d"]
    after = folder_bytes(run)
    assert {k: v for k, v in after.items() if k in before} == before
    assert all(k.startswith(("samples/c/", "samples/d/")) for k in set(after) - set(before))


def _truncated(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _file(header: bytes, data: int = 0) -> bytes:
    """A file of one JSON header and `data` zero bytes."""
    return len(header).to_bytes(8, "little") + header + bytes(data)


def _header_length(raw: bytes, size: int) -> bytes:
    return size.to_bytes(8, "little") + raw[8:]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda raw: b"just some notes\n" * 4, "not a safetensors file (it does not begin with a header length"),
        (lambda raw: b"", "not a safetensors file (empty)"),
        (lambda raw: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40), "not a safetensors file"),
        (_truncated, "a damaged safetensors file (tensor"),
        (lambda raw: raw[:100], "runs past the end of the file: cut short?"),
        (lambda raw: _header_length(raw, 2**63), "over the format's limit"),
        (lambda raw: (2).to_bytes(8, "little") + b"[]", "not a safetensors file"),
        (lambda raw: _file(b'{"x":1}'), "tensor 'x' is not an object"),
        (lambda raw: _file(b'{"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,0]}}'), "not a list of sizes"),
        (lambda raw: _file(b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', 4), "4 bytes for shape [2]"),
        (lambda raw: _file(b'{"x":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}', 8), "has dtype 'C64'"),
        (lambda raw: _file(b'{"__metadata__":{"tamx":5}}'), "__metadata__ must map names to strings"),
        (lambda raw: _file(b'{"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', 2), "starts at byte 1, not 0"),
        (lambda raw: _file(b'{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 3), "2 bytes after the last"),
        (
            lambda raw: _file(
                b'{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"U8","shape":[0],'
                b'"data_offsets":[1,1]}}',
                1,
            ),
            "its header names 'x' twice",
        ),
        (lambda raw: _file(b'{"__metadata__":{"tamx":"{\\"a\\":1,\\"a\\":2}"}}'), "metadata names 'a' twice"),
    ],
    ids=[
        "text",
        "empty",
        "png",
        "truncated",
        "cut-in-header",
        "huge-header",
        "list",
        "entry",
        "shape",
        "size",
        "dtype",
        "meta",
        "gap",
        "trailing",
        "duplicate",
        "duplicate-meta",
    ],
)
def test_a_file_that_is_not_safetensors_is_named_once_with_what_to_do(stored, tmp_path, make, message):
    run, exported = stored
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(make(exported.read_bytes()))
    before = folder_bytes(run)
    out = tamx_output("import", bad, "--out", run, code=1)
    assert message in out and out.count(str(bad)) == 1, out
    assert "export it again" not in out and "header of 8" not in out
    assert folder_bytes(run) == before


def test_a_text_file_is_not_a_safetensors_file_and_creates_no_run(tmp_path):
    """Issue 20's case: path once, what it is not and how to make one; no header size."""
    notes = tmp_path / "notes.txt"
    notes.write_text("hello world, this is not a sample\n")
    out = tamx_output("import", notes, "--out", tmp_path / "run", code=1)
    line = [x for x in out.splitlines() if "notes.txt" in x]
    assert line == [
        f"  {notes}: not a safetensors file (it does not begin with a header length and a JSON header): "
        "produce one with `tamx export` or `tamx.interchange.sample_bytes`"
    ], out
    assert not (tmp_path / "run").exists()


def test_an_unknown_hidden_dtype_is_refused_naming_the_file_and_field(tmp_path):
    """Issue 20's case: "int8" in the metadata was silently ignored (the tensor's F32 won)."""
    sample = synthetic_sample("s", grids=[(1, 4, 5)])
    good = tmp_path / "good.safetensors"
    export_sample(good, sample, synthetic_run_info())
    bad = rewrite(good, tmp_path / "int8.safetensors", _meta("hidden_dtype", "int8"))
    out = tamx_output("import", bad, good, "--out", tmp_path / "run", code=1)
    assert f"  {bad}: sample 's', field 'hidden_dtype': is 'int8', not one of ['bfloat16', 'float16', 'float32']" in out
    assert open_run(tmp_path / "run").sample_ids() == ["s"]


# ---------------------------------------------------------------------------- class 9: grids without placement


def _media_of(run: Path, sample_id: str) -> list[tuple[str, int]]:
    return [(b.kind, b.media) for b in open_run(run).sample(sample_id).vision_blocks]


def test_boxes_in_source_pixels_import_to_the_bit(tmp_path):
    """`vision_boxes` is F64: fractional pixel edges come back exactly (they were rounded
    through float32)."""
    import dataclasses

    sample = synthetic_sample("s", grids=[(1, 4, 5)])
    block = dataclasses.replace(sample.vision_blocks[0], box=(10.1, -0.3, 50.7, 30.9), image_size=(48, 30))
    sample.vision_blocks = (block,)
    path = tmp_path / "s.safetensors"
    export_sample(path, sample, synthetic_run_info())
    tamx_output("import", path, "--out", tmp_path / "run", "--quiet")
    assert open_run(tmp_path / "run").sample("s").vision_blocks[0].box == (10.1, -0.3, 50.7, 30.9)


def test_maps_metadata_without_maps_tensors_is_named_in_a_warning(stored, tmp_path, caplog):
    run, exported = stored

    def strip_maps(tensors, meta):
        for name in [n for n in tensors if n.startswith("maps.") or n.endswith("_relevance")]:
            del tensors[name]
        meta["sample_id"] = "c"

    path = rewrite(exported, tmp_path / "c.safetensors", strip_maps)
    with caplog.at_level("WARNING"):
        tamx_output("import", path, "--out", run, "--quiet")
    assert "maps (no maps tensors)" in caplog.text and open_run(run).variants("c") == []


def test_grids_without_placement_are_separate_images_with_one_eci_scale_each(tmp_path):
    """Two image grids and no `vision_blocks` metadata import as two images (media 0 and 1):
    explain gives the same maps as the file that places them so, and not those of one joint
    image (one ECI scale for both, docs/method.md Eq. 5)."""
    sample = synthetic_sample("s", grids=[(1, 5, 6), (1, 4, 4)], seed=4)
    placed = tmp_path / "placed.safetensors"
    export_sample(placed, sample, synthetic_run_info())
    assert [b["media"] for b in json.loads(read_safetensors(placed)[1]["tamx"])["vision_blocks"]] == [0, 1]

    def without_blocks(tensors, meta):
        del meta["vision_blocks"]

    def half_placed(tensors, meta):
        meta["vision_blocks"] = meta["vision_blocks"][:1]  # the first placed, the second not

    def joint(tensors, meta):
        for block in meta["vision_blocks"]:
            block["media"] = 0

    files = {
        "placed": placed,
        "bare": rewrite(placed, tmp_path / "bare.safetensors", without_blocks),
        "half": rewrite(placed, tmp_path / "half.safetensors", half_placed),
        "joint": rewrite(placed, tmp_path / "joint.safetensors", joint),
    }
    maps = {}
    for name, path in files.items():
        run = tmp_path / f"run-{name}"
        tamx_output("import", path, "--out", run, "--quiet")
        tamx_output("explain", run, "--quiet")
        maps[name] = open_run(run).maps("s", "tam")
        expected = [("image", 0), ("image", 0)] if name == "joint" else [("image", 0), ("image", 1)]
        assert _media_of(run, "s") == expected, name
    for name in ("bare", "half"):
        for part in ("final", "eci", "cam"):
            np.testing.assert_array_equal(getattr(maps[name], part), getattr(maps["placed"], part), err_msg=name)
    assert not np.allclose(maps["joint"].eci, maps["placed"].eci), "one joint scale would not be told apart"

    tamx_output("export", tmp_path / "run-bare", "--out", tmp_path / "again.safetensors")
    again = json.loads(read_safetensors(tmp_path / "again.safetensors")[1]["tamx"])["vision_blocks"]
    assert [b["media"] for b in again] == [0, 1], "the placement found on import is exported"


def test_a_video_grid_without_placement_is_its_own_video(tmp_path):
    """Without metadata, a grid with T > 1 is a video and counts among videos: an image and a
    video are image 0 and video 0, two videos are videos 0 and 1."""
    sample = synthetic_sample("s", grids=[(1, 4, 4), (2, 3, 3), (2, 3, 3)], seed=2)
    placed = tmp_path / "placed.safetensors"
    export_sample(placed, sample, synthetic_run_info())
    bare = rewrite(placed, tmp_path / "bare.safetensors", lambda t, m: m.pop("vision_blocks"))
    tamx_output("import", bare, "--out", tmp_path / "run", "--quiet")
    assert _media_of(tmp_path / "run", "s") == [("image", 0), ("video", 0), ("video", 1)]
