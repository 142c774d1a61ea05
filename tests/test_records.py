"""Records and their field tables: a field added to a table round-trips through the store and
the interchange with no other code, and a run written by schema-2.0 code (tests/golden/run-2.0,
made by tests/golden/make_run.py at the commit before the records split) still reads, explains,
renders and rewrites to the same bytes."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main

import tamx.errors
import tamx.interchange
import tamx.records
import tamx.store
from tamx import explain_sample, open_run
from tamx.explain import ExplainSettings, complete_maps
from tamx.fields import SCHEMA, array, json_field
from tamx.interchange import import_sample, sample_bytes
from tamx.records import Sample, sample_values
from tamx.store import create_run
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .conftest import folder_bytes

GOLDEN = Path(__file__).parent / "golden" / "run-2.0"
GOLDEN_IDS = ("img", "vid")


def assert_values_equal(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        if isinstance(value, np.ndarray):
            assert got[name].dtype == value.dtype, name
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        else:
            assert got[name] == value, name


# ---------------------------------------------------------------------------- adding a field


def with_field(monkeypatch, table_name: str, new_field, record: type, attribute_type: type, default=None) -> type:
    """What adding a field to the record's module costs: one attribute on the dataclass and one
    line in its table. The copied table and the record subclass stand in for the edited module
    (put where the modules that imported the table at load time hold it)."""
    subclass = dataclasses.make_dataclass(
        record.__name__,
        [(new_field.attribute or new_field.name, attribute_type, dataclasses.field(default=default))],
        bases=(record,),
    )
    table = (*getattr(tamx.records, table_name), new_field)
    for module in (tamx.records, tamx.store, tamx.interchange):
        if hasattr(module, table_name):
            monkeypatch.setattr(module, table_name, table)
        if getattr(module, record.__name__, None) is record:
            monkeypatch.setattr(module, record.__name__, subclass)
    # Sets the interchange derives from the tables when it is imported.
    monkeypatch.setattr(tamx.interchange, "KNOWN_TENSORS", tamx.interchange.KNOWN_TENSORS | {new_field.tensor_name})
    if new_field.kind == "json":
        monkeypatch.setattr(tamx.interchange, "KNOWN_METADATA", tamx.interchange.KNOWN_METADATA | {new_field.name})
        monkeypatch.setattr(
            tamx.interchange,
            "METADATA_FIELDS",
            (*tamx.interchange.METADATA_FIELDS, dataclasses.replace(new_field, required=False)),
        )
    return subclass


def round_trip(tmp_path, sample):
    """The sample read back from a run store and from an interchange file."""
    run = create_run(tmp_path / "run", synthetic_run_info())
    run.write_sample(sample)
    stored = open_run(tmp_path / "run").sample(sample.id)
    path = tmp_path / f"{sample.id}.safetensors"
    path.write_bytes(sample_bytes(sample, run.info))
    imported, _info, _maps = import_sample(path)
    return stored, imported


@pytest.mark.parametrize(
    "new_field, attribute_type, value",
    [
        (array("answer_entropy", "float32", ("N",), required=False), np.ndarray, np.linspace(0, 1, 4, dtype="f4")),
        (json_field("source_url", str, required=False), str, "https://example.org/cat.jpg"),
    ],
    ids=["array", "json"],
)
def test_a_field_added_to_a_copy_of_the_sample_table_round_trips_through_store_and_interchange(
    tmp_path, monkeypatch, new_field, attribute_type, value
):
    record = with_field(monkeypatch, "SAMPLE_FIELDS", new_field, Sample, attribute_type)
    base = synthetic_sample("s", grids=[(1, 3, 4)], n_answer=4, n_context=3, hidden_size=8, top_k=2)
    sample = record(**{f.name: getattr(base, f.name) for f in dataclasses.fields(Sample)}, **{new_field.name: value})
    sample.validate()
    for got in round_trip(tmp_path, sample):
        assert type(got) is record
        assert_values_equal(sample_values(got), sample_values(sample))
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(got, new_field.name), value)
        else:
            assert getattr(got, new_field.name) == value
    # Absent, it reads back as the attribute's default.
    sample = dataclasses.replace(sample, **{new_field.name: None})
    for got in round_trip(tmp_path / "absent", sample):
        assert getattr(got, new_field.name) is None


def test_the_table_checks_the_shape_of_an_added_field(tmp_path, monkeypatch):
    new_field = array("answer_entropy", "float32", ("N",), required=False)
    record = with_field(monkeypatch, "SAMPLE_FIELDS", new_field, Sample, np.ndarray)
    base = synthetic_sample("s", grids=[(1, 3, 4)], n_answer=4, n_context=3, hidden_size=8, top_k=2)
    wrong = np.zeros(5, dtype=np.float32)  # N = 4 answer tokens
    sample = record(**{f.name: getattr(base, f.name) for f in dataclasses.fields(Sample)}, answer_entropy=wrong)
    with pytest.raises(tamx.errors.SampleError, match=r"answer_entropy.*N = 4"):
        sample.validate()
    run = create_run(tmp_path / "run", synthetic_run_info())
    with pytest.raises(tamx.errors.SampleError, match="answer_entropy"):
        run.write_sample(sample)


def test_a_field_added_to_a_copy_of_the_maps_table_round_trips_through_the_store(tmp_path, monkeypatch):
    new_field = array("answer_mass", "float32", ("N",), required=False, tensor="maps.answer_mass")
    record = with_field(monkeypatch, "MAPS_FIELDS", new_field, tamx.records.Maps, np.ndarray)
    sample = synthetic_sample("s", grids=[(1, 3, 4)], n_answer=4, n_context=3, hidden_size=8, top_k=0)
    sample.candidate_ids = None
    maps = explain_sample(sample)
    mass = np.arange(4, dtype=np.float32)
    extended = record(**{f.name: getattr(maps, f.name) for f in dataclasses.fields(maps)}, answer_mass=mass)
    run = create_run(tmp_path / "run", synthetic_run_info())
    run.write_sample(sample)
    run.write_maps(sample.id, extended)
    got = open_run(tmp_path / "run").maps(sample.id, extended.variant)
    np.testing.assert_array_equal(got.answer_mass, mass)
    np.testing.assert_array_equal(got.final, maps.final)
    path = tmp_path / "s.safetensors"
    path.write_bytes(sample_bytes(sample, run.info, extended))
    _sample, _info, imported = import_sample(path)
    np.testing.assert_array_equal(imported.answer_mass, mass)


# ---------------------------------------------------------------------------- a schema-2.0 run


@pytest.fixture
def golden(tmp_path):
    path = tmp_path / "golden"
    shutil.copytree(GOLDEN, path)
    return path


def without_tokens(raw: bytes) -> dict:
    """A commit without what differs between two writes of the same record (tokens, times)."""
    commit = json.loads(raw)
    for key in ("token", "sample_token", "written", "created"):
        commit.pop(key, None)
    return commit


def test_a_schema_2_0_run_rewrites_to_the_same_bytes(golden, tmp_path):
    old = open_run(golden)
    new = create_run(tmp_path / "new", old.info)
    for sample_id in GOLDEN_IDS:
        new.write_sample(old.sample(sample_id))
        for variant in old.variants(sample_id):
            new.write_maps(sample_id, old.maps(sample_id, variant))
    before, after = folder_bytes(golden), folder_bytes(tmp_path / "new")
    assert sorted(before) == sorted(after)
    assert len(before) == 13
    for name, data in before.items():
        if name.endswith(".json"):
            written, read = without_tokens(after[name]), without_tokens(data)
            # a commit and the run's root name their writer's version: the same records, written by 2.x code
            if "schema" in read:
                assert written.pop("schema") == list(SCHEMA) and read.pop("schema") == [2, 0], name
            if "schema_minor" in read:
                assert written.pop("schema_minor") == SCHEMA[1] and read.pop("schema_minor") == 0, name
            assert written == read, name
        else:
            assert after[name] == data, name  # data objects: byte for byte


def test_a_schema_2_0_run_reads_and_explains_to_its_stored_maps(golden):
    run = open_run(golden)
    assert sorted(run.sample_ids()) == list(GOLDEN_IDS)
    for sample_id in GOLDEN_IDS:
        sample = run.sample(sample_id)
        assert sample.id == sample_id and sample.media and sample.messages
        settings = {"tam": ExplainSettings(), "cam": ExplainSettings(eci="off", filter="none", candidates=False)}
        for variant in run.variants(sample_id):
            stored = complete_maps(sample, run.maps(sample_id, variant))  # 2.0 deferred candidate/prompt maps
            fresh = explain_sample(sample, settings[variant], variant=variant)
            assert stored.settings == fresh.settings
            for name, value in fresh.arrays().items():
                np.testing.assert_allclose(stored.arrays()[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    img = run.sample("img")
    assert img.meta == {"question": "what?", "source": "golden"} and img.answer_logprobs.shape == (4,)
    assert img.lm_head.bias is not None and img.hidden_dtype == "bfloat16"


def test_a_schema_2_0_run_renders(golden, tmp_path):
    result = CliRunner().invoke(main, ["render", str(golden), "--out", str(tmp_path / "html"), "--quiet"])
    assert result.exit_code == 0, result.output
    pages = sorted(p.name for p in (tmp_path / "html").rglob("*.html"))
    assert any("img" in p for p in pages) and any("vid" in p for p in pages), pages
