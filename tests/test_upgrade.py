"""`tamx upgrade`: nothing of a schema-1 run is deleted before its schema-2 copy reads back
equal; what cannot be converted is kept, named and counted in the exit status; a killed
upgrade run again ends where a clean one does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main

from tamx import explain_sample, open_run
from tamx.records import sample_values
from tamx.synthetic import synthetic_sample

from .conftest import folder_bytes
from .test_store import write_schema_1_run

IDS = ("s0", "s1", "s2")


def make_samples():
    samples = [synthetic_sample(i, grids=[(1, 4, 5)], dtype="bfloat16", seed=n, top_k=0) for n, i in enumerate(IDS)]
    for sample in samples:
        sample.candidate_ids = None
    return samples


@pytest.fixture
def old(tmp_path):
    """A schema-1 run of three samples; s1 has maps variants 'tam', 'k7' and 'k7.1'."""
    samples = make_samples()
    maps = explain_sample(samples[1])
    path = tmp_path / "old"
    write_schema_1_run(path, samples, {"s1": maps})
    for variant in ("k7", "k7.1"):  # 'k7.1' is the name of k7's slot-1 object in schema 2
        shutil.copytree(path / "samples" / "s1" / "maps" / "tam", path / "samples" / "s1" / "maps" / variant)
    return path


def upgrade(path):
    result = CliRunner().invoke(main, ["upgrade", str(path), "--quiet"])
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    return result


def check_converted(path, ids=IDS):
    """The samples `ids` read from the schema-2 run equal what tamx 0.1 stored."""
    run = open_run(path)
    originals = {s.id: s for s in make_samples()}
    for sample_id in ids:
        got = sample_values(run.sample(sample_id))
        want = sample_values(originals[sample_id])
        np.testing.assert_array_equal(got["hidden"], want["hidden"])
        assert got["media"] == want["media"] and got["vision_blocks"] == want["vision_blocks"]
    return run


def test_a_clean_upgrade_converts_every_variant_and_leaves_no_schema_1_file(old):
    result = upgrade(old)
    assert result.exit_code == 0, result.output
    assert "3 sample(s) converted, 3 at store schema 2" in result.output
    run = check_converted(old)
    assert run.variants("s1") == ["k7", "k7.1", "tam"]
    for variant in run.variants("s1"):
        np.testing.assert_array_equal(run.maps("s1", variant).final, run.maps("s1", "tam").final)
    assert sorted(p.name for p in old.iterdir()) == ["samples", "tamx-run.json"]
    assert run.garbage() == {} and run.incomplete_ids() == []
    assert upgrade(old).exit_code == 0  # again: nothing to do


def damage_group_metadata(path):
    (path / "samples" / "s1" / "zarr.json").unlink()


def damage_json(path):
    (path / "samples" / "s1" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gr')


def damage_attributes(path):
    meta = json.loads((path / "samples" / "s1" / "zarr.json").read_text())
    meta["attributes"]["tamx"]["vision_blocks"] = "lost"
    (path / "samples" / "s1" / "zarr.json").write_text(json.dumps(meta))


def damage_attributes_type(path):
    meta = json.loads((path / "samples" / "s1" / "zarr.json").read_text())
    meta["attributes"]["tamx"] = ["not", "an", "object"]
    (path / "samples" / "s1" / "zarr.json").write_text(json.dumps(meta))


def damage_array(path):
    shutil.rmtree(path / "samples" / "s1" / "hidden")


def damage_chunk(path):
    for chunk in (path / "samples" / "s1" / "hidden" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(chunk.read_bytes()[:-7])


def damage_dtype(path):
    import zarr

    group = zarr.open_group(str(path / "samples" / "s1"), mode="a")
    hidden = np.asarray(group["hidden"][...])
    del group["hidden"]
    group.create_array("hidden", shape=hidden.shape, dtype="int32")[...] = hidden.astype(np.int32)


def damage_lm_head(path):
    shutil.rmtree(path / "lm_head" / "ps1")


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (damage_group_metadata, "zarr.json"),
        (damage_json, "zarr.json"),
        (damage_attributes, "sample attributes"),
        (damage_attributes_type, "has no 'tamx' attributes object"),
        (damage_array, "hidden"),
        (damage_chunk, "hidden"),
        (damage_dtype, "hidden"),
        (damage_lm_head, "lm_head/ps1"),
    ],
)
def test_a_sample_that_cannot_be_converted_is_kept_and_named(old, damage, problem):
    damage(old)
    kept = folder_bytes(old / "samples" / "s1")
    result = upgrade(old)
    assert result.exit_code == 1, result.output
    assert "1 schema-1 item(s) failed:" in result.output
    line = next(line for line in result.output.splitlines() if line.startswith("  sample 's1'"))
    assert problem in line and "schema-1/samples/s1" in line and "run `tamx upgrade" in line, line
    assert folder_bytes(old / "schema-1" / "samples" / "s1") == kept, "not one byte of it changed"
    run = check_converted(old, ids=("s0", "s2"))
    assert run.sample_ids() == ["s0", "s2"]
    assert (old / "schema-1" / "zarr.json").is_file(), "what is kept is still a schema-1 run"
    # run again: the same one line, nothing else changes
    again = upgrade(old)
    assert again.exit_code == 1 and line in again.output
    assert folder_bytes(old / "schema-1" / "samples" / "s1") == kept


def test_a_kept_sample_is_converted_once_its_files_are_restored(old, tmp_path):
    backup = tmp_path / "backup.json"
    shutil.copy(old / "samples" / "s1" / "zarr.json", backup)
    damage_json(old)
    assert upgrade(old).exit_code == 1
    shutil.copy(backup, old / "schema-1" / "samples" / "s1" / "zarr.json")
    result = upgrade(old)
    assert result.exit_code == 0, result.output
    run = check_converted(old)
    assert run.variants("s1") == ["k7", "k7.1", "tam"]
    assert not (old / "schema-1").exists()


def test_a_sample_written_since_the_upgrade_is_never_replaced(old, tmp_path):
    shutil.copy(old / "samples" / "s1" / "zarr.json", tmp_path / "backup.json")
    damage_json(old)
    assert upgrade(old).exit_code == 1
    newer = synthetic_sample("s1", grids=[(1, 4, 5)], dtype="bfloat16", seed=9, top_k=0)
    open_run(old, mode="a").write_sample(newer)
    written = folder_bytes(old / "samples" / "s1")
    shutil.copy(tmp_path / "backup.json", old / "schema-1" / "samples" / "s1" / "zarr.json")
    kept = folder_bytes(old / "schema-1" / "samples" / "s1")
    result = upgrade(old)
    assert result.exit_code == 1 and "differs from the schema-2 sample of the same id" in result.output
    assert folder_bytes(old / "samples" / "s1") == written and folder_bytes(old / "schema-1" / "samples" / "s1") == kept


def test_a_damaged_variant_keeps_its_sample_folder_and_the_rest_converts(old):
    (old / "samples" / "s1" / "maps" / "k7" / "zarr.json").write_text("{")
    kept = folder_bytes(old / "samples" / "s1")
    result = upgrade(old)
    assert result.exit_code == 1 and "maps/k7/zarr.json" in result.output, result.output
    assert folder_bytes(old / "schema-1" / "samples" / "s1") == kept
    run = check_converted(old)
    assert run.variants("s1") == ["k7.1", "tam"]


def stage(path, sample_id, complete):
    """Copy a sample into 0.1's staging/samples as its write_sample left it (`complete`: the
    attributes, written last, are there)."""
    staged = path / "staging" / "samples" / f"{sample_id}@0123456789ab"
    shutil.copytree(path / "samples" / sample_id, staged, ignore=shutil.ignore_patterns("maps"))  # 0.1 wrote none
    meta = json.loads((staged / "zarr.json").read_text())
    if complete:
        meta["attributes"]["tamx"]["written"] = "2026-01-02T00:00:00+00:00"
    else:
        del meta["attributes"]["tamx"]
    (staged / "zarr.json").write_text(json.dumps(meta))
    return staged


def test_the_only_copy_of_a_sample_in_staging_is_converted_and_the_old_version_kept(old):
    # tamx 0.1 killed between the two renames of an overwrite of s1: the old version in
    # staging/trash, the new one in staging/samples, nothing at samples/s1
    stage(old, "s1", complete=True)
    (old / "staging" / "trash").mkdir()
    (old / "samples" / "s1").rename(old / "staging" / "trash" / "9f")
    (old / "staging" / "lm_head").mkdir()  # empty: nothing to keep
    trash = folder_bytes(old / "staging" / "trash")
    result = upgrade(old)
    assert result.exit_code == 1, result.output
    assert "3 sample(s) converted" in result.output and "1 schema-1 item(s) failed:" in result.output
    assert "schema-1/staging/trash/9f: an earlier version of a sample" in result.output
    assert folder_bytes(old / "schema-1" / "staging" / "trash") == trash
    assert check_converted(old).variants("s1") == []  # 0.1 dropped the maps of an overwritten sample
    assert not (old / "schema-1" / "staging" / "samples").exists() or not any(
        (old / "schema-1" / "staging" / "samples").iterdir()
    )


@pytest.mark.parametrize("committed", [False, True])
def test_an_unfinished_or_second_copy_in_staging_is_kept_and_named(old, committed):
    staged = stage(old, "s1", complete=committed)
    if not committed:
        shutil.rmtree(old / "samples" / "s1")
    kept = folder_bytes(staged)
    result = upgrade(old)
    assert result.exit_code == 1, result.output
    key = "schema-1/staging/samples/s1@0123456789ab: "
    line = next(line for line in result.output.splitlines() if key in line)
    assert ("uncommitted copy" if committed else "its write stopped before it finished") in line, line
    assert "re-encode" in line
    assert folder_bytes(old / "schema-1" / "staging" / "samples" / "s1@0123456789ab") == kept
    assert open_run(old).sample_ids() == (["s0", "s1", "s2"] if committed else ["s0", "s2"])


def test_an_odd_sample_folder_name_is_kept_and_named(old):
    (old / "samples" / "s2").rename(old / "samples" / "aux")  # a Windows device name
    result = upgrade(old)
    assert result.exit_code == 1, result.output
    assert "sample 'aux'" in result.output and "reserved name" in result.output
    assert (old / "schema-1" / "samples" / "aux" / "zarr.json").is_file()


def test_an_odd_variant_name_and_a_stray_file_are_kept_and_named(old):
    shutil.copytree(old / "samples" / "s1" / "maps" / "tam", old / "samples" / "s1" / "maps" / "bad name")
    (old / "samples" / "notes.txt").write_text("mine")
    kept = folder_bytes(old / "samples" / "s1")
    result = upgrade(old)
    assert result.exit_code == 1, result.output
    assert "2 schema-1 item(s) failed:" in result.output
    assert "the variant name 'bad name' holds ' '" in result.output
    assert "schema-1/samples/notes.txt: not part of a tamx 0.1 run; kept" in result.output
    assert folder_bytes(old / "schema-1" / "samples" / "s1") == kept
    assert (old / "schema-1" / "samples" / "notes.txt").read_text() == "mine"
    assert check_converted(old).variants("s1") == ["k7", "k7.1", "tam"]


def test_a_full_disk_stops_the_upgrade_with_every_sample_kept_and_a_rerun_finishes(old, monkeypatch):
    import errno

    from tamx.store import LocalObjects

    write = LocalObjects.write

    def full(self, key, data, atomic=False):
        if key.endswith("sample.0") and "s1" in key:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.root / key))
        return write(self, key, data, atomic)

    monkeypatch.setattr(LocalObjects, "write", full)
    s1, s2 = folder_bytes(old / "samples" / "s1"), folder_bytes(old / "samples" / "s2")
    result = upgrade(old)
    assert result.exit_code == 1 and "no space left on device" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, "stops at once: s2 is not charged with it"
    assert (
        folder_bytes(old / "schema-1" / "samples" / "s1") == s1
        and folder_bytes(old / "schema-1" / "samples" / "s2") == s2
    )
    monkeypatch.setattr(LocalObjects, "write", write)
    assert upgrade(old).exit_code == 0
    assert check_converted(old).variants("s1") == ["k7", "k7.1", "tam"] and not (old / "schema-1").exists()


def test_a_damaged_root_stops_before_anything_moves(old):
    (old / "zarr.json").write_text(json.dumps({"attributes": {"tamx": "x"}}))
    before = folder_bytes(old)
    result = upgrade(old)
    assert result.exit_code == 1 and "restore the file from a backup" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert folder_bytes(old) == before


def test_a_schema_1_root_named_tamx_run_json_is_called_damaged_not_convertible(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "tamx-run.json").write_text('{"schema_version": 1, "run": {}}')
    for command in ("info", "upgrade"):
        result = CliRunner().invoke(main, [command, str(tmp_path / "run")])
        assert result.exit_code == 1 and "is damaged" in result.output, result.output
        assert "convert it with" not in result.output


KILLER = textwrap.dedent(
    """
    import collections, json, os, shutil, sys
    from tamx.store import LocalObjects
    from tamx.upgrade import upgrade_run

    target, kill_at, count = sys.argv[2], int(sys.argv[3]), collections.Counter()

    def hook(owner, name):
        function = getattr(owner, name)

        def wrapped(*args, **kwargs):
            count[name] += 1
            if name == target and count[name] == kill_at:
                os._exit(137)  # as a kill: no cleanup runs
            return function(*args, **kwargs)

        setattr(owner, name, wrapped)

    for owner, name in [(os, "rename"), (os, "replace"), (os, "unlink"), (os, "rmdir"), (LocalObjects, "write")]:
        hook(owner, name)
    upgrade_run(sys.argv[1])
    print(json.dumps(count))
    """
)


def kill(path, operation="", at=0):
    """Run the upgrade of `path` in a process killed just before the `at`-th call of `operation`
    (None), or to the end (how many calls of each file operation it made)."""
    command = [sys.executable, "-c", KILLER, str(path), operation, str(at)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode in (0, 137), done.stderr
    return json.loads(done.stdout) if done.returncode == 0 else None


def write_old(path):
    samples = make_samples()
    write_schema_1_run(path, samples, {"s1": explain_sample(samples[1])})


@pytest.fixture(scope="module")
def operations(tmp_path_factory):
    """How many calls of each file operation a clean upgrade of `write_old`'s run makes."""
    path = tmp_path_factory.mktemp("count") / "old"
    write_old(path)
    return kill(path)


@pytest.mark.parametrize(
    ("operation", "at"),
    [
        ("rename", 2),  # moving the schema-1 files aside: lm_head moved, samples and zarr.json not
        ("rename", 3),  # all but zarr.json moved
        ("write", 1),  # before the first schema-2 object
        ("replace", 1),  # s0's commit written aside, not in place
        ("replace", 3),  # s1's maps commit written aside
        ("rename", 5),  # s1 converted and read back, its schema-1 folder not yet moved off
        ("unlink", 9),  # halfway through deleting a converted sample's schema-1 files
        ("replace", -1),  # every sample converted, tamx-run.json written aside
        ("rmdir", -1),  # deleting the emptied schema-1 folder
    ],
)
def test_an_upgrade_killed_anywhere_finishes_when_run_again(tmp_path, operations, operation, at):
    path = tmp_path / "old"
    write_old(path)
    assert kill(path, operation, operations[operation] + 1 + at if at < 0 else at) is None, "it was killed"
    opened = CliRunner().invoke(main, ["info", str(path)])
    assert opened.exit_code == 0 or "`tamx upgrade" in opened.output, opened.output
    result = upgrade(path)
    assert result.exit_code == 0, result.output
    run = check_converted(path)
    assert run.variants("s1") == ["tam"]
    np.testing.assert_array_equal(run.maps("s1").final, explain_sample(make_samples()[1]).final)
    assert sorted(p.name for p in path.iterdir()) == ["samples", "tamx-run.json"], "no schema-1 leftovers"
    assert run.garbage() == {} and run.incomplete_ids() == []
    assert not list(path.rglob(".*")), "no commit left aside"
