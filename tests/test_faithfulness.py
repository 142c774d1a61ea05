"""tamx faithfulness: deletion and insertion through the CLI, on a shapes run of the bundled toy
model, with a planted model (a saved model folder) whose answer provably depends on one region
only, and under torchrun (two CPU ranks)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main

from tamx import create_run, open_run
from tamx.synthetic import synthetic_run_info, synthetic_sample

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.slow  # one module fixture encodes and explains two scenes with the toy model (~1 min)


def cli(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """(dataset folder, run) of two held-out shapes scenes, encoded teacher-forced and explained (cam, tam)."""
    root = tmp_path_factory.mktemp("faith")
    data, run = root / "shapes", root / "run"
    cli("shapes", "--out", data, "--scenes", "2", "--seed", "1000")
    cli("encode", "--model", "tamx-demo", "--manifest", data / "manifest-true.jsonl", "--out", run,
        "--device", "cpu", "--dtype", "fp32", "--quiet")  # fmt: skip
    cli("explain", run, "--variant", "cam", "--no-eci", "--filter", "none", "--quiet")
    cli("explain", run, "--quiet")
    return data, run


def _copy(run, tmp_path):
    import shutil

    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture(scope="module")
def planted(shapes, tmp_path_factory):
    """(model folder, run, sample id, category): a saved LLaVA whose every answer token of the first
    scene reads only the pixels of its first named object (tests/planted_faithfulness.py), and the
    two scenes encoded teacher-forced with it and explained (cam, tam)."""
    from .planted_faithfulness import write_planted_model

    data, _ = shapes
    root = tmp_path_factory.mktemp("planted")
    sample_id = "shapes-00000"
    folder, category = write_planted_model(root / "planted-model", data, sample_id)
    run = root / "run"
    cli("encode", "--model", folder, "--manifest", data / "manifest-true.jsonl", "--out", run,
        "--device", "cpu", "--dtype", "fp32", "--quiet")  # fmt: skip
    cli("explain", run, "--variant", "cam", "--no-eci", "--filter", "none", "--quiet")
    cli("explain", run, "--quiet")
    return folder, run, sample_id, category


@pytest.fixture
def forward_passes():
    """Counts the LLaVA forward passes of this test and the images in them (whichever code loaded
    the model); `stop_after` passes, the next one raises KeyboardInterrupt, as if the run were killed."""
    from transformers import LlavaForConditionalGeneration

    class Passes:
        calls, images, stop_after = 0, 0, None

    def before(module, args):
        if isinstance(module, LlavaForConditionalGeneration):
            Passes.calls += 1
            if Passes.stop_after is not None and Passes.calls > Passes.stop_after:
                raise KeyboardInterrupt

    def after(module, args, output):
        if isinstance(module, LlavaForConditionalGeneration):
            Passes.images += len(output.logits)

    hooks = [
        torch.nn.modules.module.register_module_forward_pre_hook(before),
        torch.nn.modules.module.register_module_forward_hook(after),
    ]
    yield Passes
    for hook in hooks:
        hook.remove()


def test_a_planted_region_gives_a_mask_deletion_auc_far_below_random(shapes, planted, tmp_path):
    data, _ = shapes
    folder, source, sample_id, category = planted
    run = _copy(source, tmp_path)
    cli("faithfulness", run, "--model", folder, "--variants", "tam", "--baseline", "zero",
        "--dataset", "folder", "--data", data, "--quiet")  # fmt: skip
    record = open_run(run).faithfulness(sample_id, "tam")
    aucs = record.aucs()
    sample = open_run(run).sample(sample_id, media=False)
    words = [sample.tokens[sample.answer_positions[t]].strip() for t in record.tokens]
    rows = [row for row, word in enumerate(words) if word == category]
    assert rows and np.isfinite(aucs["mask_deletion"][rows]).all()  # the word naming the region has its mask
    assert record.full.min() > 0.5 and record.baseline.max() < 0.05  # the planted dependence holds
    assert np.all(aucs["mask_deletion"][rows] * 3 <= aucs["random_deletion"][rows])
    assert np.all(aucs["mask_insertion"][rows] >= aucs["random_insertion"][rows])


def test_sharing_images_between_orders_gives_the_curves_of_scoring_each_order_on_its_own(
    shapes, planted, tmp_path, forward_passes
):
    from tamx.pipeline.encode.loading import load_model, load_processor
    from tamx.pipeline.faithfulness import FaithfulnessSettings, faithfulness_run

    data, _ = shapes
    folder, source, sample_id, _ = planted
    torch.set_num_threads(1)  # as `tamx faithfulness --threads 1` (the default) does
    model, processor = load_model(str(folder), device="cpu", dtype="fp32"), load_processor(str(folder))
    found, images = {}, {}
    for share in (False, True):
        run = _copy(source, tmp_path / str(share))
        before = forward_passes.images
        # the planted model's cam and tam of one token share their top cells
        report = faithfulness_run(
            run,
            str(folder),
            variants=["cam", "tam"],
            settings=FaithfulnessSettings(),
            dataset="folder",
            data=data,
            sample_ids=[sample_id],
            model=model,
            processor=processor,
            share_images=share,
        )
        images[share] = forward_passes.images - before
        assert report.done == [sample_id] and report.forward_images == images[share]
        found[share] = {v: open_run(run).faithfulness(sample_id, v) for v in ("cam", "tam")}
    for variant, alone in found[False].items():
        shared = found[True][variant]
        assert np.array_equal(shared.tokens, alone.tokens) and len(alone.tokens) >= 2
        for name in ("deletion", "insertion", "random_deletion", "random_insertion"):
            np.testing.assert_allclose(getattr(shared, name), getattr(alone, name), rtol=0, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(shared.mask_deletion, alone.mask_deletion, rtol=0, atol=1e-6)
        np.testing.assert_allclose(shared.mask_insertion, alone.mask_insertion, rtol=0, atol=1e-6)
    assert images[True] < images[False]  # the same curves from fewer forward passes


def test_eval_reports_the_faithfulness_block_and_says_how_without_records(shapes, tmp_path):
    data, source = shapes
    run = _copy(source, tmp_path)
    out = cli("eval", run, "--dataset", "folder", "--data", data, "--out", tmp_path / "before").output
    assert "no faithfulness records: run `tamx faithfulness" in out
    cli("faithfulness", run, "--model", "tamx-demo", "--steps", "4", "--random-orders", "1",
        "--dataset", "folder", "--data", data, "--device", "cpu", "--quiet")  # fmt: skip
    out = cli("eval", run, "--dataset", "folder", "--data", data, "--out", tmp_path / "after").output
    assert "rnd del" in out and "colour" in out and "shape" in out
    block = json.loads((tmp_path / "after" / "summary.json").read_text())["faithfulness"]
    assert set(block) == {"cam", "tam"}
    assert block["tam"]["method"] == block["cam"]["method"] == "tam@-1"  # labelled as the plausibility table
    table = out.split("faithfulness (AUC")[1].splitlines()
    rows = [line for line in table if line.startswith(("cam ", "tam "))]
    assert len(rows) == 6 and all(row.endswith(" tam@-1") for row in rows)  # all, colour, shape per variant
    for entry in block.values():
        for key in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
                    "mask_deletion_auc", "difference"):  # fmt: skip
            assert 0 <= abs(entry[key]) <= 1
        assert set(entry["per_word_class"]) >= {"colour", "shape"}
    assert (tmp_path / "after" / "faithfulness.csv").read_text().startswith("variant,sample,token")


def test_a_killed_run_resumes_without_recomputing_finished_samples(planted, tmp_path, forward_passes):
    folder, source, first, _ = planted
    run = _copy(source, tmp_path)
    second = next(s for s in open_run(run).sample_ids() if s != first)
    options = ("--model", folder, "--variants", "tam", "--steps", "3", "--random-orders", "1", "--quiet")
    forward_passes.stop_after = 2  # two forward passes a sample at batch 64
    cli("faithfulness", run, *options, "--batch-size", "64", code=130)
    assert open_run(run).faithfulness_variants(first) == ["tam"]
    assert open_run(run).faithfulness_variants(second) == []
    kept = json.loads((run / "samples" / first / "faithfulness" / "tam.json").read_text())["token"]
    forward_passes.stop_after, forward_passes.calls = None, 0
    out = CliRunner().invoke(main, ["faithfulness", str(run), *options[:-1], "--batch-size", "64"])
    assert out.exit_code == 0 and "1 sample(s) scored" in out.output and "1 already stored" in out.output
    assert forward_passes.calls == 2  # the second sample only
    assert json.loads((run / "samples" / first / "faithfulness" / "tam.json").read_text())["token"] == kept
    cli("faithfulness", run, *options, "--overwrite", "--batch-size", "64")
    assert forward_passes.calls == 6
    assert json.loads((run / "samples" / first / "faithfulness" / "tam.json").read_text())["token"] != kept


def test_two_torchrun_ranks_score_each_sample_once_with_the_curves_of_one_process(shapes, tmp_path):
    from .test_encode_core import ROOT, _env

    data, source = shapes
    one, two = _copy(source, tmp_path / "one"), _copy(source, tmp_path / "two")
    options = ["--model", "tamx-demo", "--steps", "4", "--random-orders", "1", "--dataset", "folder",
               "--data", str(data), "--device", "cpu", "--threads", "1"]  # fmt: skip
    single = cli("faithfulness", one, *options).output
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "tamx.pipeline", "-v", "faithfulness", str(two), *options]
    env = {**_env(), "OMP_NUM_THREADS": "2"}  # torchrun's default would be 1: --threads 1 must win over 2
    ranks = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert ranks.returncode == 0, ranks.stderr
    for rank in (0, 1):  # a shard each (one of the two scenes), every rank on one thread
        assert f"rank {rank} of 2: 1 sample(s) to score, 0 already stored; 1 torch thread(s)" in ranks.stderr
    summary = [line for line in ranks.stderr.splitlines() if "scored in" in line]
    assert len(summary) == 1 and "2 sample(s) scored" in summary[0] and "on 2 ranks" in summary[0]
    images = [re.search(r"\((\d+) images", text).group(1) for text in (single, summary[0])]
    assert images[0] == images[1]  # every image scored once over the ranks
    first, second = open_run(one), open_run(two)
    for sample_id in first.sample_ids():
        assert first.faithfulness_variants(sample_id) == second.faithfulness_variants(sample_id) == ["cam", "tam"]
        for variant in ("cam", "tam"):
            a, b = first.faithfulness(sample_id, variant), second.faithfulness(sample_id, variant)
            assert np.array_equal(a.tokens, b.tokens) and a.settings == b.settings
            for name in ("full", "baseline", "deletion", "insertion", "random_deletion", "random_insertion",
                         "mask_deletion", "mask_insertion"):  # fmt: skip
                np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-6, err_msg=name)
    # rank 1's sample fails (its maps damaged): rank 0 lists it and the job exits with status 1
    maps = two / "samples" / second.sample_ids()[1] / "maps"
    damaged = maps / f"tam.{json.loads((maps / 'tam.json').read_text())['slot']}"
    damaged.write_bytes(damaged.read_bytes()[:100])
    failing = [*command, "--variants", "tam", "--overwrite", "--quiet"]
    broken = subprocess.run(failing, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert broken.returncode == 1, broken.stderr
    assert broken.stderr.count("1 sample(s) failed:") == 1 and "chunk 0 is truncated" in broken.stderr


def _no_model(monkeypatch):
    import tamx.pipeline.encode.loading as loading

    def refuse(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loading, "load_model", refuse)


def test_bad_requests_are_refused_before_the_model_loads(shapes, tmp_path, monkeypatch):
    _, run = shapes
    _no_model(monkeypatch)
    out = cli("faithfulness", run, "--model", "tamx-demo", "--variants", "nope", code=1).output
    assert "no variant 'nope'" in out and "stored: cam, tam" in out
    out = cli("faithfulness", run, "--model", "Qwen/Qwen2-VL-2B-Instruct", code=1).output
    assert "was encoded with model 'tamx-demo', not 'Qwen/Qwen2-VL-2B-Instruct'" in out
    bare = create_run(tmp_path / "bare", synthetic_run_info())
    bare.write_sample(synthetic_sample("no-media", grids=[(1, 4, 4)], media=False))
    cli("explain", tmp_path / "bare", "--quiet")
    out = cli("faithfulness", tmp_path / "bare", "--model", "synthetic", code=1).output
    assert "store no image" in out
    assert cli("faithfulness", run, "--model", "tamx-demo", "--dataset", "folder", code=2)


def test_every_token_of_a_two_image_sample_is_scored_over_both_images(tmp_path):
    cli("demo", "--out", tmp_path / "demo")
    run = tmp_path / "demo" / "run"
    cli("faithfulness", run, "--model", "tamx-demo", "--variants", "tam", "--words", "all", "--steps", "3",
        "--random-orders", "1", "--device", "cpu", "--quiet")  # fmt: skip
    stored = open_run(run)
    sample = stored.sample("two-images", media=False)
    assert len({b.media for b in sample.vision_blocks}) == 2
    record = stored.faithfulness("two-images", "tam")
    assert record.tokens.tolist() == list(range(len(sample.answer_positions)))
    assert np.allclose(record.full, np.exp(sample.answer_logprobs), atol=1e-4)  # teacher forcing as encode did
    for curve in (record.deletion, record.random_deletion):
        assert np.array_equal(curve[:, 0], record.full) and np.array_equal(curve[:, -1], record.baseline)
    for curve in (record.insertion, record.random_insertion):
        assert np.array_equal(curve[:, 0], record.baseline) and np.array_equal(curve[:, -1], record.full)
    assert not np.allclose(record.full, record.baseline)  # both images replaced changes the answer
