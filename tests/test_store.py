"""The zarr run store: round trips, atomic writes, damage detection, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr

import tamx.store
from tamx import RunInfo, SampleError, StoreError, VisionBlock, create_run, explain_sample, open_run
from tamx.dtypes import to_float32
from tamx.synthetic import synthetic_run_info, synthetic_sample


def chunk_files(folder):
    return sorted(p for p in folder.rglob("c/*") if p.is_file()) + sorted(
        p for p in folder.rglob("c/*/*") if p.is_file()
    )


def test_sample_round_trip_is_lossless(tmp_path):
    original = synthetic_sample("s", grids=[(1, 4, 6), (2, 3, 3)], dtype="bfloat16", bias=True)
    run = create_run(tmp_path / "run", synthetic_run_info(dtype="bfloat16"))
    run.write_sample(original)
    loaded = open_run(tmp_path / "run").sample("s")
    assert loaded.hidden.dtype == np.uint16 and loaded.hidden_dtype == "bfloat16"
    np.testing.assert_array_equal(loaded.hidden, original.hidden)
    for name in ("input_ids", "answer_positions", "context_positions", "candidate_ids", "candidate_logprobs"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    assert loaded.vision_blocks == original.vision_blocks
    assert loaded.tokens == original.tokens and loaded.messages == original.messages
    assert loaded.media == original.media and len(loaded.media) == 1 + 4
    rows, bias = loaded.lm_head.weights(original.lm_head.ids)
    want_rows, want_bias = original.lm_head.weights(original.lm_head.ids)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(bias, want_bias)
    np.testing.assert_array_equal(explain_sample(loaded).tam, explain_sample(original).tam)


def test_maps_round_trip_and_variants(run_path):
    run = open_run(run_path, mode="a")
    maps = explain_sample(run.sample("img"))
    run.write_maps("img", maps)
    loaded = run.maps("img", "tam")
    for name, value in maps.arrays().items():
        np.testing.assert_array_equal(getattr(loaded, name), value)
    assert loaded.settings == maps.settings
    assert run.variants("img") == ["tam"] and run.variants("video") == []
    with pytest.raises(SampleError, match=r"maps/cam.*stored: tam"):
        run.maps("img", "cam")
    with pytest.raises(SampleError, match="already stored"):
        run.write_maps("img", maps)


def test_lm_head_rows_are_stored_once_per_token_id(tmp_path):
    run = create_run(tmp_path / "run", synthetic_run_info())
    first = synthetic_sample("a", seed=1)
    second = synthetic_sample("b", seed=1)  # same token ids as "a"
    run.write_sample(first)
    run.write_sample(second)
    packs = [p for p in (tmp_path / "run" / "lm_head").iterdir() if p.is_dir()]
    assert len(packs) == 1, "the second sample needed no new rows"
    stored_ids = np.asarray(zarr.open_group(str(packs[0]))["ids"][...])
    np.testing.assert_array_equal(stored_ids, first.needed_token_ids())
    np.testing.assert_array_equal(run.sample("b").lm_head.ids, second.needed_token_ids())


def test_reading_is_refused_for_another_schema_version(run_path):
    root = run_path / "zarr.json"
    meta = json.loads(root.read_text())
    meta["attributes"]["tamx"]["schema_version"] = 99
    root.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"schema version 99.*reads version 1"):
        open_run(run_path)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(StoreError, match="not a tamx run store"):
        open_run(tmp_path)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_chunks_name_the_sample_and_field(run_path, damage):
    chunk = chunk_files(run_path / "samples" / "multi" / "hidden")[0]
    data = bytearray(chunk.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        chunk.write_bytes(bytes(data))
    elif damage == "truncate":
        chunk.write_bytes(bytes(data[: len(data) // 3]))
    else:
        chunk.unlink()
    run = open_run(run_path)
    with pytest.raises(SampleError, match=r"sample 'multi', field 'hidden'") as info:
        run.sample("multi")
    assert "re-encode or re-import" in str(info.value)
    run.sample("img")  # the other samples are untouched


def test_interrupted_sample_write_is_never_read_and_is_reported(run_path, monkeypatch):
    run = open_run(run_path, mode="a")
    calls = []

    def crash_on_third_array(group, name, data):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        original(group, name, data)

    original = tamx.store._write_array
    monkeypatch.setattr(tamx.store, "_write_array", crash_on_third_array)
    with pytest.raises(KeyboardInterrupt):
        run.write_sample(synthetic_sample("late", dtype="bfloat16"))
    monkeypatch.setattr(tamx.store, "_write_array", original)
    reopened = open_run(run_path, mode="a")
    assert "late" not in reopened.sample_ids() and reopened.incomplete_ids() == ["late"]
    reopened.write_sample(synthetic_sample("late", dtype="bfloat16"))
    assert "late" in reopened.sample_ids() and reopened.incomplete_ids() == []


def test_a_killed_writer_leaves_only_complete_samples(tmp_path):
    path = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        from tamx import create_run
        from tamx.synthetic import synthetic_run_info, synthetic_sample
        run = create_run({str(path)!r}, synthetic_run_info())
        for i in range(200):
            run.write_sample(synthetic_sample(f"s{{i:03d}}", grids=[(1, 24, 24)], hidden_size=512, seed=i))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline and len(list((path / "samples").glob("s*"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = open_run(path)
    ids = run.sample_ids()
    assert len(ids) >= 3 and len(ids) < 200
    for sample_id in ids:
        run.sample(sample_id)  # every complete sample reads with valid checksums
    assert set(run.incomplete_ids()) <= {f"s{i:03d}" for i in range(200)} - set(ids)


def test_grid_that_disagrees_with_its_block_is_refused(tmp_path):
    sample = synthetic_sample("bad", grids=[(1, 4, 5)])
    block = sample.vision_blocks[0]
    sample.vision_blocks = (VisionBlock(start=block.start, grid=(1, 3, 5)),)
    run = create_run(tmp_path / "run", synthetic_run_info())
    with pytest.raises(SampleError, match=r"'bad', field 'vision_grids'.*15 cells but the block holds 20"):
        run.write_sample(sample)
    assert run.sample_ids() == []


def test_missing_lm_head_row_is_refused_at_write(tmp_path):
    sample = synthetic_sample("s")
    sample.lm_head = sample.lm_head.subset(sample.lm_head.ids[:-1])
    run = create_run(tmp_path / "run", synthetic_run_info())
    with pytest.raises(SampleError, match=r"'s', field 'lm_head_rows'.*no LM-head row for 1 token"):
        run.write_sample(sample)


def test_missing_lm_head_pack_is_reported_at_read(run_path):
    run = open_run(run_path)
    for pack in (run_path / "lm_head").iterdir():
        if pack.is_dir():
            os.rename(pack, run_path / f"moved-{pack.name}")
    with pytest.raises(SampleError, match=r"field 'lm_head_rows'"):
        run.sample("img")


def test_nonfinite_hidden_states_are_stored_and_counted(tmp_path):
    sample = synthetic_sample("nan")
    sample.hidden[sample.vision_blocks[0].start, 0] = np.nan
    run = create_run(tmp_path / "run", synthetic_run_info())
    run.write_sample(sample)
    loaded = run.sample("nan")
    assert np.isnan(to_float32(loaded.hidden, "float32")).sum() == 1
    assert explain_sample(loaded).nonfinite_hidden == 1


def test_write_guards(run_path, tmp_path):
    with pytest.raises(StoreError, match="read-only"):
        open_run(run_path).write_sample(synthetic_sample("x"))
    run = open_run(run_path, mode="a")
    with pytest.raises(SampleError, match="already stored"):
        run.write_sample(synthetic_sample("img", dtype="bfloat16"))
    run.write_sample(synthetic_sample("img", dtype="bfloat16", seed=42), overwrite=True)
    with pytest.raises(SampleError, match="field 'id'"):
        run.write_sample(synthetic_sample("../escape"))
    with pytest.raises(StoreError, match="already holds a store"):
        create_run(run_path, synthetic_run_info())
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        create_run(tmp_path / "full", synthetic_run_info())
    with pytest.raises(StoreError, match="model 'synthetic', not 'other'"):
        create_run(run_path, RunInfo(model_id="other"), exist_ok=True)


def test_unknown_sample_lists_what_exists(run_path):
    with pytest.raises(SampleError, match=r"no such sample.*img, multi, video"):
        open_run(run_path).sample("nope")
