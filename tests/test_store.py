"""The run store (schema 2): round trips, commits, damage detection, validation, clear errors."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main

import tamx.store
from tamx import (
    ExplainSettings,
    LMHead,
    RunInfo,
    SampleError,
    StoreError,
    VisionBlock,
    create_run,
    explain_sample,
    open_run,
)
from tamx.dtypes import to_float32
from tamx.errors import FieldError
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .conftest import folder_bytes


def objects(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_sample_round_trip_is_lossless(tmp_path):
    original = synthetic_sample("s", grids=[(1, 4, 6), (2, 3, 3)], dtype="bfloat16", bias=True)
    run = create_run(tmp_path / "run", synthetic_run_info(dtype="bfloat16"))
    run.write_sample(original)
    loaded = open_run(tmp_path / "run").sample("s")
    assert loaded.hidden.dtype == np.uint16 and loaded.hidden_dtype == "bfloat16"
    assert loaded.lm_head.dtype == "bfloat16" and loaded.lm_head.rows.dtype == np.uint16, "rows stay bf16 bits"
    np.testing.assert_array_equal(loaded.hidden, original.hidden)
    for name in ("input_ids", "answer_positions", "context_positions", "candidate_ids", "candidate_logprobs"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    assert loaded.vision_blocks == original.vision_blocks
    assert loaded.tokens == original.tokens and loaded.messages == original.messages
    assert loaded.media == original.media and len(loaded.media) == 1 + 4
    np.testing.assert_array_equal(loaded.lm_head.rows, original.lm_head.subset(loaded.lm_head.ids).rows)
    np.testing.assert_array_equal(loaded.lm_head.bias, original.lm_head.subset(loaded.lm_head.ids).bias)
    np.testing.assert_array_equal(explain_sample(loaded).final, explain_sample(original).final)
    assert open_run(tmp_path / "run").sample("s", media=False).media == []


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


def test_a_sample_is_two_objects_and_a_variant_two_more(run_path):
    run = open_run(run_path, mode="a")
    assert objects(run_path / "samples" / "img") == ["sample.0", "sample.json"]
    run.write_maps("img", explain_sample(run.sample("img")))
    assert objects(run_path / "samples" / "img") == ["maps/tam.0", "maps/tam.json", "sample.0", "sample.json"]
    run.write_maps("img", explain_sample(run.sample("img")), overwrite=True)  # the other slot; the old one goes
    assert objects(run_path / "samples" / "img") == ["maps/tam.1", "maps/tam.json", "sample.0", "sample.json"]
    assert objects(run_path)[-1] == "tamx-run.json" and len(objects(run_path)) == 3 * 2 + 2 + 1


def test_a_sample_stores_exactly_the_lm_head_rows_it_needs(tmp_path):
    run = create_run(tmp_path / "run", synthetic_run_info())
    sample = synthetic_sample("a", seed=1)
    head = sample.lm_head
    sample.lm_head = LMHead(
        ids=np.append(head.ids, head.ids.max() + 1), rows=np.vstack([head.rows, head.rows[:1]]), dtype=head.dtype
    )
    run.write_sample(sample)
    np.testing.assert_array_equal(run.sample("a").lm_head.ids, sample.needed_token_ids())


def test_overwriting_a_sample_drops_its_maps(run_path):
    run = open_run(run_path, mode="a")
    run.write_maps("img", explain_sample(run.sample("img")))
    run.write_sample(synthetic_sample("img", grids=[(1, 9, 13)], dtype="bfloat16", seed=7), overwrite=True)
    assert run.variants("img") == [] and run.maps_settings("img", "tam") is None
    assert objects(run_path / "samples" / "img") == ["sample.1", "sample.json"]


def test_maps_of_a_sample_rewritten_meanwhile_are_refused(run_path):
    """Maps name the sample version they were computed from: a sample another writer replaced
    while they were computed gets none of them (same dimensions, so only the version tells)."""
    run = open_run(run_path, mode="a")
    before = run.sample("img")
    version = run.sample_version("img")
    maps = explain_sample(before)
    again = synthetic_sample("img", grids=[tuple(b.grid) for b in before.vision_blocks], dtype="bfloat16", seed=7)
    assert explain_sample(again).final.shape == maps.final.shape  # the dimensions alone would let them in
    run.write_sample(again, overwrite=True)
    with pytest.raises(SampleError, match="rewritten while these maps were computed"):
        run.write_maps("img", maps, sample_version=version)
    assert run.variants("img") == []
    run.write_maps("img", explain_sample(run.sample("img")), sample_version=run.sample_version("img"))
    assert run.variants("img") == ["tam"]


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(StoreError, match="not a tamx run store"):
        open_run(tmp_path)


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("[1, 2]", r"damaged: a JSON list, not an object"),
        (b"\xff\xfe garbage", r"damaged: not UTF-8 JSON"),
        ('{"schema_version": 2, "run": ', r"damaged: not UTF-8 JSON"),
        ('{"schema_version": "2", "run": {}}', r"schema_version is '2' \(str\).*where integers belong"),
        ('{"schema_version": null, "run": {}}', r"schema_version is None.*where integers belong"),
        ('{"schema_version": 3, "schema_minor": 0, "run": {}}', r"schema 3.0, newer than this tamx.*upgrade tamx"),
        ('{"schema_version": 1, "run": {}}', r"damaged: it says schema 1, but only schema 2 runs have a tamx-run.json"),
        ('{"schema_version": 2, "run": []}', r"'run' must be an object"),
        ('{"schema_version": 2, "run": {"special_tokens": {"image_token": "x"}}}', r"field 'special_tokens'"),
        ('{"schema_version": 2, "run": {"special_tokens": []}}', r"field 'special_tokens' must be an object"),
        ('{"schema_version": 2, "run": {"dtype": "int8"}}', r"field 'dtype' is 'int8'"),
        ('{"schema_version": 2, "run": {"model_id": 5}}', r"field 'model_id' must be a string, got int"),
    ],
)
def test_damaged_or_foreign_run_metadata_gives_a_clear_error(run_path, root, message):
    path = run_path / "tamx-run.json"
    path.write_bytes(root if isinstance(root, bytes) else root.encode())
    with pytest.raises(StoreError, match=message) as info:
        open_run(run_path)
    assert "reads version 2, has version 2" not in str(info.value)


def test_a_newer_minor_version_opens_and_names_the_fields_it_ignores(run_path, caplog):
    root = json.loads((run_path / "tamx-run.json").read_text())
    root["schema_minor"] = 7
    (run_path / "tamx-run.json").write_text(json.dumps(root))
    commit_path = run_path / "samples" / "img" / "sample.json"
    commit = json.loads(commit_path.read_text())
    commit["json"]["saliency_prior"] = [1, 2, 3]
    commit_path.write_text(json.dumps(commit))
    with caplog.at_level("WARNING"):
        sample = open_run(run_path).sample("img")
    assert sample.id == "img"
    assert "saliency_prior" in caplog.text and "schema 2.1, the run is 2.7" in caplog.text


def test_a_schema_1_run_says_how_to_convert_it(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "zarr.json").write_text(json.dumps({"attributes": {"tamx": {"schema_version": 1}}}))
    with pytest.raises(StoreError, match=r"schema-1 run.*tamx upgrade"):
        open_run(tmp_path / "old")


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_data_names_the_sample_and_field(run_path, damage):
    data_path = run_path / "samples" / "multi" / "sample.0"
    commit = json.loads((run_path / "samples" / "multi" / "sample.json").read_text())
    offset, length = commit["fields"]["hidden"]["chunks"][0]
    data = bytearray(data_path.read_bytes())
    if damage == "flip":
        data[offset + length // 2] ^= 0xFF
        data_path.write_bytes(bytes(data))
    elif damage == "truncate":
        data_path.write_bytes(bytes(data[: offset + length // 3]))
    else:
        data_path.unlink()
    run = open_run(run_path)
    with pytest.raises(SampleError, match=r"sample 'multi', field '(hidden|input_ids)'") as info:
        run.sample("multi")
    assert "re-encode or re-import" in str(info.value)
    run.sample("img")  # the other samples are untouched


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: "[]", r"field 'commit'.*JSON list, not an object"),
        (lambda c: "{garbled", r"field 'commit'.*not valid JSON"),
        (lambda c: json.dumps({**c, "schema": [9, 0]}), r"store schema 9.0; this tamx reads schema 2"),
        (lambda c: json.dumps({k: v for k, v in c.items() if k != "fields"}), r"commit lacks 'fields'"),
        (lambda c: json.dumps({**c, "json": {**c["json"], "vision_blocks": "x"}}), r"'vision_blocks'.*must be a list"),
        (lambda c: json.dumps({**c, "json": {**c["json"], "hidden_dtype": None}}), r"'hidden_dtype'.*missing"),
        (lambda c: json.dumps({**c, "json": {**c["json"], "media": [{"kind": 1}]}}), r"'media'.*entry 0"),
        (lambda c: json.dumps({**c, "json": {**c["json"], "tokens": [1] * 5}}), r"'tokens'.*must hold strings"),
        (
            lambda c: json.dumps({**c, "fields": {**c["fields"], "hidden": {**c["fields"]["hidden"], "shape": [2]}}}),
            r"field 'hidden'.*bytes for shape",
        ),
    ],
)
def test_damaged_commits_name_the_sample_and_are_reported_by_info(run_path, edit, message):
    from tamx.pipeline.info import run_summary

    path = run_path / "samples" / "multi" / "sample.json"
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises(SampleError, match=r"sample 'multi'.*" + message):
        open_run(run_path).sample("multi")
    summary = run_summary(run_path)
    listed = [s["id"] for s in summary["samples"]]
    assert "multi" in listed or "multi" in summary["damaged"], "a damaged sample never vanishes silently"


def test_a_sample_whose_commit_is_deleted_is_reported_not_hidden(run_path):
    from tamx.pipeline.info import run_summary

    (run_path / "samples" / "multi" / "sample.json").unlink()
    summary = run_summary(run_path)
    assert summary["incomplete"] == ["multi"] and "samples/multi/sample.0" in summary["garbage"]["multi"]


def test_interrupted_sample_write_is_never_read_and_is_reported(run_path, monkeypatch):
    run = open_run(run_path, mode="a")
    original = tamx.store.LocalObjects.write

    def crash_before_the_commit(self, key, data, atomic=False):
        if key.endswith(".json"):
            raise KeyboardInterrupt
        original(self, key, data, atomic)

    monkeypatch.setattr(tamx.store.LocalObjects, "write", crash_before_the_commit)
    with pytest.raises(KeyboardInterrupt):
        run.write_sample(synthetic_sample("late", dtype="bfloat16"))
    with pytest.raises(KeyboardInterrupt):  # an overwrite killed before its commit keeps the old sample
        run.write_sample(synthetic_sample("img", grids=[(1, 9, 13)], dtype="bfloat16", seed=9), overwrite=True)
    monkeypatch.setattr(tamx.store.LocalObjects, "write", original)
    reopened = open_run(run_path, mode="a")
    assert "late" not in reopened.sample_ids() and reopened.incomplete_ids() == ["late"]
    assert reopened.garbage() == {"img": ["samples/img/sample.1"], "late": ["samples/late/sample.0"]}
    before = open_run(run_path).sample("img")
    np.testing.assert_array_equal(before.hidden, synthetic_sample("img", grids=[(1, 9, 13)], dtype="bfloat16").hidden)
    reopened.write_sample(synthetic_sample("late", dtype="bfloat16"))
    assert "late" in reopened.sample_ids() and reopened.incomplete_ids() == [] and "late" not in reopened.garbage()


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
    while time.time() < deadline and len(list((path / "samples").glob("s*/sample.json"))) < 3:  # 3 committed
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


def _shifted(sample, **changes):
    for name, value in changes.items():
        setattr(sample, name, value)
    return sample


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda s: _shifted(s, input_ids=s.input_ids.astype(np.float32)), "input_ids", "must hold int64"),
        (lambda s: _shifted(s, hidden=s.hidden.astype(np.int32)), "hidden", "must hold float32"),
        (lambda s: _shifted(s, hidden=s.hidden[:-1]), "hidden", "with L-1 = 230"),
        (
            lambda s: _shifted(s, context_positions=np.r_[s.vision_blocks[0].start + 1, s.context_positions]),
            "context_positions",
            "inside vision block 0",
        ),
        (
            lambda s: _shifted(s, context_positions=np.union1d(s.context_positions, s.answer_positions[:2])),
            "context_positions",
            "also answer positions",
        ),
        (
            lambda s: _shifted(s, context_positions=np.r_[s.context_positions, s.answer_positions[-1] + 5]),
            "context_positions",
            "must lie in",
        ),
        (lambda s: _shifted(s, tokens=[1] * len(s.input_ids)), "tokens", "must hold strings"),
        (lambda s: _shifted(s, candidate_tokens=[["a"]] * len(s.answer_positions)), "candidate_tokens", "one string"),
        (lambda s: _shifted(s, meta=["not", "an", "object"]), "meta", "must be an object, got list"),
        (lambda s: _shifted(s, candidate_logprobs=s.candidate_logprobs[:, :1]), "candidate_logprobs", "K = 3"),
    ],
)
def test_every_field_is_checked_on_write(tmp_path, change, field, message):
    run = create_run(tmp_path / "run", synthetic_run_info())
    with pytest.raises(SampleError, match=rf"sample 'x', field '{field}'.*{message}"):
        run.write_sample(change(synthetic_sample("x")))
    assert run.sample_ids() == [] and run.garbage() == {}


def test_maps_of_the_wrong_shape_are_refused(run_path):
    run = open_run(run_path, mode="a")
    maps = explain_sample(run.sample("img"))
    maps.final = maps.final[:, :-1]
    with pytest.raises(SampleError, match=r"'img', field 'maps/tam/tam'.*V = 117"):
        run.write_maps("img", maps)
    other = explain_sample(run.sample("video"))
    with pytest.raises(SampleError, match=r"'img', field 'maps/tam/cam'"):
        run.write_maps("img", other)


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


def test_nonfinite_lm_head_rows_are_warned_counted_and_stored(tmp_path, caplog):
    sample = synthetic_sample("nanrow")
    answer_id = sample.input_ids[sample.answer_positions[0]]
    sample.lm_head.rows[np.searchsorted(sample.lm_head.ids, answer_id), :2] = [np.nan, np.inf]
    run = create_run(tmp_path / "run", synthetic_run_info())
    run.write_sample(sample)
    with caplog.at_level("WARNING"):
        maps = explain_sample(run.sample("nanrow"))
    assert maps.nonfinite_lm_head == 2 and np.isfinite(maps.final).all()
    assert "2 non-finite LM-head value(s)" in caplog.text and str(answer_id) in caplog.text
    run.write_maps("nanrow", maps)
    assert run.maps("nanrow").nonfinite_lm_head == 2


def write_schema_1_run(path, samples, maps):
    """A run in the schema-1 layout (zarr groups, shared LM-head packs), as tamx 0.1 wrote it."""
    import zarr
    from zarr.codecs import Crc32cCodec, ZstdCodec

    def put(group, name, data):
        data = np.ascontiguousarray(data)
        array = group.create_array(name, shape=data.shape, dtype=data.dtype, compressors=(ZstdCodec(), Crc32cCodec()))
        if data.size:
            array[...] = data

    info = synthetic_run_info(dtype="bfloat16")
    root = zarr.open_group(str(path), mode="w")
    root.attrs["tamx"] = {"schema_version": 1, "run": info.to_json(), "created": "2026-01-01T00:00:00+00:00"}
    for sample in samples:
        pack = zarr.open_group(str(path / "lm_head" / f"p{sample.id}"), mode="w")
        pack.attrs["tamx"] = {"dtype": sample.lm_head.dtype}
        head = sample.lm_head.subset(sample.needed_token_ids())
        put(pack, "ids", head.ids)
        put(pack, "rows", head.rows)
        group = zarr.open_group(str(path / "samples" / sample.id), mode="w")
        for name in ("hidden", "input_ids", "answer_positions", "context_positions", "candidate_ids"):
            if getattr(sample, name) is not None:
                put(group, name, getattr(sample, name))
        for index, item in enumerate(sample.media):
            put(group, f"media/{index}", np.frombuffer(item.data, dtype=np.uint8))
        group.attrs["tamx"] = {
            "hidden_dtype": sample.hidden_dtype,
            "vision_blocks": [b.to_json() for b in sample.vision_blocks],
            "lm_head_packs": [f"p{sample.id}"],
            "tokens": sample.tokens,
            "candidate_tokens": sample.candidate_tokens,
            "messages": sample.messages,
            "meta": sample.meta,
            "media": [{"item": m.item, "kind": m.kind, "mime": m.mime, "frame": m.frame} for m in sample.media],
        }
        if sample.id in maps:
            m = maps[sample.id]
            mgroup = zarr.open_group(str(path / "samples" / sample.id / "maps" / m.variant), mode="w")
            for name, value in m.arrays().items():
                put(mgroup, name, value)
            mgroup.attrs["tamx"] = {"settings": m.settings, "nonfinite_hidden": 0}


def test_upgrade_converts_a_schema_1_run_in_place(tmp_path):
    from click.testing import CliRunner
    from tamx.pipeline.cli import main

    samples = [synthetic_sample(f"s{i}", grids=[(1, 4, 5)], dtype="bfloat16", seed=i, top_k=0) for i in range(3)]
    for sample in samples:
        sample.candidate_ids = None
    maps = {"s1": explain_sample(samples[1])}
    path = tmp_path / "old"
    write_schema_1_run(path, samples, maps)
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 1 and "tamx upgrade" in result.output
    result = CliRunner().invoke(main, ["upgrade", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    run = open_run(path)
    assert run.sample_ids() == ["s0", "s1", "s2"] and run.variants("s1") == ["tam"]
    for sample in samples:
        loaded = run.sample(sample.id)
        np.testing.assert_array_equal(loaded.hidden, sample.hidden)
        assert loaded.lm_head.dtype == "bfloat16" and loaded.media == sample.media
    np.testing.assert_array_equal(run.maps("s1").final, maps["s1"].tam)
    assert not (path / "zarr.json").exists() and not (path / "lm_head").exists() and run.garbage() == {}
    assert objects(path / "samples" / "s1") == ["maps/tam.0", "maps/tam.json", "sample.0", "sample.json"]
    assert CliRunner().invoke(main, ["upgrade", str(path), "--quiet"]).exit_code == 0  # idempotent


@pytest.mark.parametrize(
    ("grids", "kwargs"),
    [
        ([(1, 9, 13)], {}),
        ([(1, 6, 8), (1, 4, 4)], {"bias": True}),
        ([(3, 5, 6)], {"dtype": "bfloat16"}),
        ([(1, 17, 23)], {"hidden_size": 1536, "vocab_size": 151936, "n_answer": 128, "dtype": "bfloat16"}),
    ],
)
def test_deferred_candidate_and_prompt_maps_equal_eager_ones(grids, kwargs):
    from tamx.explain import complete_maps

    sample = synthetic_sample("s", grids=grids, **kwargs)
    eager = explain_sample(sample)
    deferred = explain_sample(sample, defer=True)
    assert deferred.candidate_maps is None
    assert deferred.deferred == ["candidate_maps", "prompt_maps", "prompt_relevance"]
    complete_maps(sample, deferred)
    assert deferred.deferred == [] and set(deferred.arrays()) == set(eager.arrays())
    for name, value in eager.arrays().items():
        np.testing.assert_array_equal(getattr(deferred, name), value, err_msg=name)


def test_the_explain_stage_stores_every_map_the_settings_ask_for(run_path):
    from tamx.pipeline.explain import explain_run

    explain_run(run_path)
    explain_run(run_path, ExplainSettings(candidates=False, prompt=False), "answers")
    run = open_run(run_path)
    stored = run.maps("multi")
    assert stored.deferred == [] and stored.candidate_maps is not None and stored.prompt_maps is not None
    for name, value in explain_sample(run.sample("multi")).arrays().items():
        np.testing.assert_array_equal(getattr(stored, name), value, err_msg=name)
    answers = run.maps("multi", "answers")  # --no-candidates --no-prompt: none stored, none owed
    assert answers.deferred == [] and answers.candidate_maps is None and answers.prompt_maps is None


GOLDEN = Path(__file__).parent / "golden"
GOLDEN_EXPLAIN = {
    "tam": [],
    "cam": ["--no-eci", "--filter", "none"],
    "nocand": ["--no-candidates", "--variant", "nocand"],
}


def test_a_run_with_deferred_maps_reads_explains_and_renders_as_before(tmp_path):
    """tests/golden/deferred-run was explained when explain deferred the candidate and prompt
    maps: reading it computes nothing, readers complete it to the maps it read to then, a new
    explain skips it, and its pages equal those of the same run explained anew."""
    from tamx.explain import complete_maps

    run_path = tmp_path / "run"
    shutil.copytree(GOLDEN / "deferred-run", run_path)
    expected = np.load(GOLDEN / "deferred-run-maps.npz")
    before = folder_bytes(run_path)
    run = open_run(run_path)
    for sample_id in ("img", "vid"):
        sample = run.sample(sample_id, media=False)
        for variant in GOLDEN_EXPLAIN:
            stored = run.maps(sample_id, variant)  # passive: what is stored, the rest named
            assert stored.prompt_maps is None and "prompt_maps" in stored.deferred
            complete_maps(sample, stored)
            assert stored.deferred == []
            keys = {k.rsplit("/", 1)[1] for k in expected.files if k.startswith(f"{sample_id}/{variant}/")}
            assert keys - {"nonfinite_lm_head"} == set(stored.arrays())
            for name, value in stored.arrays().items():
                np.testing.assert_array_equal(value, expected[f"{sample_id}/{variant}/{name}"], err_msg=name)
            assert stored.nonfinite_lm_head == int(expected[f"{sample_id}/{variant}/nonfinite_lm_head"])

    runner = CliRunner()
    for options in GOLDEN_EXPLAIN.values():
        result = runner.invoke(main, ["explain", str(run_path), "--quiet", *options])
        assert result.exit_code == 0, result.output
    old = runner.invoke(main, ["render", str(run_path), "--out", str(tmp_path / "old"), "--quiet"])
    assert old.exit_code == 0, old.output
    assert folder_bytes(run_path) == before, "explain skipped the stored variants and render wrote nothing"

    for options in GOLDEN_EXPLAIN.values():
        result = runner.invoke(main, ["explain", str(run_path), "--quiet", "--overwrite", *options])
        assert result.exit_code == 0, result.output
    run = open_run(run_path)
    for sample_id in ("img", "vid"):
        for variant in GOLDEN_EXPLAIN:
            stored = run.maps(sample_id, variant)
            assert stored.deferred == []
            for name, value in stored.arrays().items():
                np.testing.assert_array_equal(value, expected[f"{sample_id}/{variant}/{name}"], err_msg=name)
    new = runner.invoke(main, ["render", str(run_path), "--out", str(tmp_path / "new"), "--quiet"])
    assert new.exit_code == 0, new.output
    pages = folder_bytes(tmp_path / "old")
    assert set(pages) == {"index.html", "samples/img.html", "samples/vid.html"}
    assert pages == folder_bytes(tmp_path / "new")


def test_the_store_neither_imports_nor_runs_explain(tmp_path):
    """Reading every sample and variant of a run with deferred maps loads no explain code."""
    code = f"""
import sys
from tamx import open_run
run = open_run({str(GOLDEN / "deferred-run")!r})
for sample_id in run.sample_ids():
    run.sample(sample_id)
    for variant in run.variants(sample_id):
        assert run.maps(sample_id, variant).deferred
print(sorted(m for m in sys.modules if m in ("tamx.explain", "tamx.filters", "numba")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_repeated_lm_head_ids_are_a_tamx_error_naming_the_field():
    with pytest.raises(FieldError, match=r"field 'lm_head_ids': LM-head ids must be unique; repeated: 3, 7;") as caught:
        LMHead(ids=np.array([7, 3, 3, 7, 9]), rows=np.zeros((5, 2), np.float32))
    assert isinstance(caught.value, tamx.TamxError) and caught.value.field == "lm_head_ids"
