"""tamx faithfulness: deletion and insertion through the CLI, on a shapes run of the bundled toy
model, with a planted model whose answer provably depends on one region only."""

from __future__ import annotations

import json

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


class Planted(torch.nn.Module):
    """A model whose every answer token's logit reads only the pixels of one region: high when
    they are the original ones, low when they are zero. Counts the images it scores; can stop
    (as if killed) after a number of forward passes."""

    def __init__(self, real, region: np.ndarray, answer_ids: np.ndarray, stop_after: int | None = None):
        super().__init__()
        self.config = real.config
        self.generation_config = real.generation_config
        self.region = torch.as_tensor(region, dtype=torch.float32)
        self.answer_ids = torch.as_tensor(answer_ids)
        self.reference: tuple[float, float] | None = None
        self.calls, self.images, self.stop_after = 0, 0, stop_after
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def forward(self, input_ids, pixel_values, logits_to_keep=1, **_):
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt
        self.images += len(input_ids)
        inside = (pixel_values.abs() * self.region).sum(dim=(1, 2, 3)) / (3 * self.region.sum())
        low, high = self.reference
        share = ((inside - low) / (high - low)).clamp(0, 1)  # 1: the region as it is, 0: zeroed
        vocab = self.config.text_config.vocab_size
        logits = torch.zeros(len(input_ids), logits_to_keep, vocab)
        steps = torch.arange(len(self.answer_ids))  # row j of the kept logits predicts answer token j
        logits[:, steps, self.answer_ids] = (14 * share - 6)[:, None]
        return type("Out", (), {"logits": logits})()


def _planted(run_path, data, sample_id, **kw):
    """The planted model for one sample: it reads the mask of the sample's first named object."""
    import cv2
    from tamx.pipeline.encode.loading import load_model, load_processor

    from tamx.datasets import load_dataset

    record = {r.id: r for r in load_dataset("folder", data)}[sample_id]
    category, mask = next(iter(record.masks().items()))
    processor = load_processor("tamx-demo")
    real = load_model("tamx-demo", device="cpu", dtype="fp32")
    sample = open_run(run_path).sample(sample_id)
    size = processor.image_processor.crop_size["height"]
    region = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    model = Planted(real, region, sample.input_ids[sample.answer_positions], **kw)
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(sample.media[0].data, np.uint8), 1), cv2.COLOR_BGR2RGB)
    values = [
        processor.image_processor(im, return_tensors="pt")["pixel_values"] for im in (np.zeros_like(image), image)
    ]
    model.reference = tuple(float((v.abs() * model.region).sum() / (3 * model.region.sum())) for v in values)
    return model, processor, category


def _use(monkeypatch, model, processor):
    import tamx.pipeline.encode.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: model)
    monkeypatch.setattr(loading, "load_processor", lambda *a, **k: processor)


def test_a_planted_region_gives_a_mask_deletion_auc_far_below_random(shapes, tmp_path, monkeypatch):
    data, source = shapes
    run = _copy(source, tmp_path)
    sample_id = open_run(run).sample_ids()[0]
    model, processor, category = _planted(run, data, sample_id)
    _use(monkeypatch, model, processor)
    cli("faithfulness", run, "--model", "tamx-demo", "--variants", "tam", "--baseline", "zero",
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


def test_sharing_images_between_orders_gives_the_curves_of_scoring_each_order_on_its_own(shapes, tmp_path):
    from tamx.pipeline.faithfulness import FaithfulnessSettings, faithfulness_run

    data, source = shapes
    sample_id = open_run(source).sample_ids()[0]
    found, images = {}, {}
    for share in (False, True):
        run = _copy(source, tmp_path / str(share))
        model, processor, _ = _planted(run, data, sample_id)
        # 50 steps of 144 cells: the top few cells of two maps of one token often agree
        report = faithfulness_run(
            run,
            "tamx-demo",
            variants=["cam", "tam"],
            settings=FaithfulnessSettings(steps=50),
            dataset="folder",
            data=data,
            sample_ids=[sample_id],
            model=model,
            processor=processor,
            share_images=share,
        )
        assert report.done == [sample_id] and report.forward_images == model.images
        images[share] = model.images
        found[share] = {v: open_run(run).faithfulness(sample_id, v) for v in ("cam", "tam")}
    for variant, alone in found[False].items():
        shared = found[True][variant]
        assert np.array_equal(shared.tokens, alone.tokens) and len(alone.tokens) >= 2
        for name in ("deletion", "insertion", "random_deletion", "random_insertion"):
            np.testing.assert_allclose(getattr(shared, name), getattr(alone, name), rtol=0, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(shared.mask_deletion, alone.mask_deletion, rtol=0, atol=1e-6)
        np.testing.assert_allclose(shared.mask_insertion, alone.mask_insertion, rtol=0, atol=1e-6)
    assert images[True] < images[False]  # the same curves from fewer forward passes


def test_eval_reports_the_faithfulness_block_and_says_how_without_records(shapes, tmp_path, monkeypatch):
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
    for entry in block.values():
        for key in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
                    "mask_deletion_auc", "difference"):  # fmt: skip
            assert 0 <= abs(entry[key]) <= 1
        assert set(entry["per_word_class"]) >= {"colour", "shape"}
    assert (tmp_path / "after" / "faithfulness.csv").read_text().startswith("variant,sample,token")


def test_a_killed_run_resumes_without_recomputing_finished_samples(shapes, tmp_path, monkeypatch):
    data, source = shapes
    run = _copy(source, tmp_path)
    first, second = open_run(run).sample_ids()
    options = ("--model", "tamx-demo", "--variants", "tam", "--steps", "3", "--random-orders", "1", "--quiet")
    model, processor, _ = _planted(run, data, first, stop_after=2)  # two forward passes a sample at batch 64
    _use(monkeypatch, model, processor)
    cli("faithfulness", run, *options, "--batch-size", "64", code=130)
    assert open_run(run).faithfulness_variants(first) == ["tam"]
    assert open_run(run).faithfulness_variants(second) == []
    kept = json.loads((run / "samples" / first / "faithfulness" / "tam.json").read_text())["token"]
    model.stop_after, model.calls = None, 0
    out = CliRunner().invoke(main, ["faithfulness", str(run), *options[:-1], "--batch-size", "64"])
    assert out.exit_code == 0 and "1 sample(s) scored" in out.output and "1 already stored" in out.output
    assert model.calls == 2  # the second sample only
    assert json.loads((run / "samples" / first / "faithfulness" / "tam.json").read_text())["token"] == kept
    cli("faithfulness", run, *options, "--overwrite", "--batch-size", "64")
    assert model.calls == 6
    assert json.loads((run / "samples" / first / "faithfulness" / "tam.json").read_text())["token"] != kept


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
