"""tamx faithfulness on video and image + video samples: the core's mapping of a video slice's cells
onto the sampled frames it merges (no torch), and the whole CLI path on a tiny Qwen2-VL."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tamx.faithfulness import cell_order, cell_regions, rank_images, step_images, video_slice_frames
from tamx.records import VisionBlock

# ------------------------------------------------------------------ the core, without torch

IMAGE = VisionBlock(start=1, grid=(1, 2, 3), kind="image", media=0, box=(0.0, 0.0, 30.0, 20.0))
# Qwen2-VL's layout: one block, slice t merges the sampled frames 2t and 2t + 1
VIDEO = VisionBlock(start=10, grid=(2, 2, 3), kind="video", media=1, frames=((0, 2), (3, 5)), box=(0, 0, 84, 56))
SIZES = {("image", 0, None): (30, 20), **{("video", 1, k): (84, 56) for k in range(4)}}
SOURCES = {1: [0, 2, 3, 5]}  # the source frame index of each stored (sampled) frame


def test_a_video_slice_cell_covers_the_same_box_on_every_frame_the_slice_merges():
    regions = cell_regions([IMAGE, VIDEO], SIZES, SOURCES)
    assert regions.items == [("image", 0, None), ("video", 1, 0), ("video", 1, 1), ("video", 1, 2), ("video", 1, 3)]
    assert regions.seen.all()
    assert [list(regions.covers(c)) for c in (0, 5)] == [[0], [0]]  # the image's cells: the image only
    assert [list(regions.covers(c)) for c in range(6, 12)] == [[1, 2]] * 6  # slice 0: frames 0 and 1
    assert [list(regions.covers(c)) for c in range(12, 18)] == [[3, 4]] * 6  # slice 1: frames 2 and 3
    assert regions.boxes[6].tolist() == regions.boxes[12].tolist() == [0, 0, 28, 28]
    assert regions.boxes[17].tolist() == [56, 28, 84, 56]

    # removing one cell of slice 1 (cell 13: row 0, column 1) changes its box on frames 2 and 3 only
    ranks = rank_images(regions, np.array([13]))
    frames = [np.full((56, 84, 3), 200, np.uint8) for _ in range(4)]
    gone = [np.zeros_like(f) for f in frames]
    stepped = [step_images(f, g, r, np.array([1]))[0] for f, g, r in zip(frames, gone, ranks[1:])]
    changed = [np.argwhere((s != f).any(axis=-1)) for s, f in zip(stepped, frames)]
    assert [len(c) for c in changed] == [0, 0, 28 * 28, 28 * 28]
    for c in changed[2:]:
        assert (c.min(axis=0).tolist(), c.max(axis=0).tolist()) == ([0, 28], [27, 55])  # rows 0..27, columns 28..55
    assert (ranks[0] == 1).all()  # the image is never touched


def test_one_order_runs_over_the_cells_of_the_image_and_of_every_slice_by_map_value():
    """No quota per image or frame: the 6 cells of largest value go first wherever they lie (here
    slice 1 of the video, cells 12..17), so after 6 of 18 steps frames 2 and 3 are gone whole
    while the image and frames 0 and 1 are untouched."""
    regions = cell_regions([IMAGE, VIDEO], SIZES, SOURCES)
    values = np.r_[np.full(6, 0.5), np.full(6, 0.1), np.linspace(0.9, 1.0, 6)]
    order = cell_order(values, regions.seen, np.random.default_rng(0))
    assert order.tolist() == [17, 16, 15, 14, 13, 12, *order[6:12].tolist(), *order[12:].tolist()]
    assert sorted(order[6:12].tolist()) == list(range(6)) and sorted(order[12:].tolist()) == list(range(6, 12))
    gone = [(rank < 6).mean() for rank in rank_images(regions, order)]
    assert gone == [0.0, 0.0, 0.0, 1.0, 1.0]  # image, frames 0..3


def test_qwen3_vl_blocks_of_one_slice_each_share_the_video_frames_in_order():
    """Qwen3-VL writes one (1, H, W) block per slice: the slices count over the video's blocks."""
    blocks = [
        VisionBlock(start=1, grid=(1, 2, 3), kind="video", media=0, frames=((0, 2),)),
        VisionBlock(start=12, grid=(1, 2, 3), kind="video", media=0, frames=((3, 5),)),
    ]
    sizes = {("video", 0, k): (84, 56) for k in range(4)}
    regions = cell_regions(blocks, sizes, {0: [0, 2, 3, 5]})
    assert [list(regions.covers(c)) for c in (0, 6)] == [[0, 1], [2, 3]]
    assert video_slice_frames(blocks, {0: [0, 2, 3, 5]}) == {(0, 0): range(0, 2), (1, 0): range(2, 4)}


def test_one_frame_slices_and_repeated_source_frames():
    """LLaVA-OneVision's video: one slice per frame; a short clip's repeated frame is a frame of its own."""
    block = VisionBlock(start=1, grid=(3, 1, 2), kind="video", media=0, frames=((0,), (1,), (1,)))
    sizes = {("video", 0, k): (20, 10) for k in range(3)}
    regions = cell_regions([block], sizes, {0: [0, 1, 1]})
    assert [list(regions.covers(c)) for c in range(6)] == [[0], [0], [1], [1], [2], [2]]


def test_frames_that_do_not_fit_the_slices_are_refused():
    with pytest.raises(ValueError, match="3 sampled frames for 2 slices"):
        cell_regions([VIDEO], {("video", 1, k): (84, 56) for k in range(3)}, {1: [0, 2, 3]})
    with pytest.raises(ValueError, match=r"slice 1 merges source frames \(3, 5\)"):
        cell_regions([VIDEO], SIZES, {1: [0, 2, 4, 5]})
    with pytest.raises(KeyError):
        cell_regions([VIDEO], SIZES)  # no sampled frames given for the video


# ------------------------------------------------------------------ the CLI on a tiny Qwen2-VL


def _cli(*args, code=0):
    from click.testing import CliRunner
    from tamx.pipeline.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen3_vl"])
def video_run(request, tiny_model_dir, tmp_path_factory):
    """A tiny Qwen2-VL (one video block of 2 slices) or Qwen3-VL (one block per slice, timestamps
    in the prompt) run of a video sample and an image + video sample (4 frames), explained (tam),
    scored by `tamx faithfulness --baseline zero`; with every video the processor got while scoring."""
    torch = pytest.importorskip("torch")
    from tamx.pipeline.encode import loading

    from .tiny_models import QwenVideoProcessorDouble, write_image, write_video

    model_dir = tiny_model_dir(request.param)
    folder = tmp_path_factory.mktemp("faith-video")
    write_video(folder / "clip.avi", 6, 56, 84, seed=3)
    write_image(folder / "wide.png", 60, 100, seed=1)
    lines = [
        {"id": "clip", "messages": [{"role": "user", "content": [
            {"type": "video", "video": "clip.avi"}, {"type": "text", "text": "What happens?"}]}],
         "answer": "a red ball rolls"},
        {"id": "mixed", "messages": [{"role": "user", "content": [
            {"type": "image", "image": "wide.png"}, {"type": "video", "video": "clip.avi"},
            {"type": "text", "text": "Which one shows more people?"}]}],
         "answer": "the video"},
    ]  # fmt: skip
    (folder / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    seen: list[np.ndarray] = []

    class Recording(QwenVideoProcessorDouble):
        def __call__(self, videos, **kwargs):
            seen.extend(np.asarray(v).copy() for v in videos)
            return super().__call__(videos, **kwargs)

    real = loading.load_processor

    def with_video(model_id):
        processor = real(model_id)
        if getattr(processor, "video_processor", None) is None:  # no torchvision on this machine
            processor.video_processor = Recording(processor.image_processor, processor.image_processor.patch_size)
        return processor

    run = folder / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loading, "load_processor", with_video)
        _cli("encode", "--model", model_dir, "--manifest", folder / "manifest.jsonl", "--out", run,
             "--frames", "4", "--device", "cpu", "--dtype", "fp32", "--quiet")  # fmt: skip
        _cli("explain", run, "--quiet")
        seen.clear()
        _cli("faithfulness", run, "--model", model_dir, "--baseline", "zero", "--words", "all", "--steps", "12",
             "--device", "cpu", "--dtype", "fp32", "--quiet")  # fmt: skip
        processor = with_video(str(model_dir))
    model = loading.load_model(str(model_dir), device="cpu", dtype="fp32")
    return run, model, processor, list(seen), torch


def _stored_media(sample):
    import cv2

    decoded = [cv2.cvtColor(cv2.imdecode(np.frombuffer(m.data, np.uint8), 1), cv2.COLOR_BGR2RGB) for m in sample.media]
    images = [d for d, m in zip(decoded, sample.media) if m.kind == "image"]
    frames = np.stack([d for d, m in zip(decoded, sample.media) if m.kind == "video-frame"])
    return images, frames, [m.frame for m in sample.media if m.kind == "video-frame"]


def _teacher_forced(model, processor, sample, images, frames, sources, torch):
    """p of every answer token with these images and video frames: the processor and model called
    here directly (not through tamx), the clip's 4 fps as encode read it."""
    from transformers.video_utils import VideoMetadata

    from .tiny_models import with_answer

    metadata = VideoMetadata(total_num_frames=6, fps=4.0, frames_indices=sources, height=56, width=84)
    inputs = processor(text=[sample.meta["prompt"]], images=images or None, videos=[frames], do_sample_frames=False,
                       video_metadata=[metadata], return_tensors="pt")  # fmt: skip
    prompt = inputs["input_ids"].shape[1]
    assert np.array_equal(inputs["input_ids"][0].numpy(), sample.input_ids[:prompt])
    answer = torch.as_tensor(sample.input_ids[prompt:])[None]
    inputs = with_answer(inputs, answer)
    with torch.inference_mode():
        logits = model(**inputs).logits[0, prompt - 1 : -1].float()
    return torch.softmax(logits, -1).gather(1, answer[0, :, None])[:, 0].numpy()


@pytest.mark.slow  # the module fixture encodes, explains and scores two samples per family (~8 s)
@pytest.mark.parametrize("sample_id", ["clip", "mixed"])
def test_faithfulness_scores_video_samples_from_their_stored_frames(video_run, sample_id):
    from tamx import open_run

    run_path, model, processor, _, torch = video_run
    run = open_run(run_path)
    sample = run.sample(sample_id)
    kinds = [b.kind for b in sample.vision_blocks]
    assert sorted(set(kinds)) == (["video"] if sample_id == "clip" else ["image", "video"])
    record = run.faithfulness(sample_id, "tam")
    answers = len(sample.answer_positions)
    assert record.tokens.tolist() == list(range(answers))  # --words all
    assert record.fractions.tolist() == pytest.approx([k / 12 for k in range(13)])
    for name in ("deletion", "insertion", "random_deletion", "random_insertion"):
        curve = getattr(record, name)
        assert curve.shape == (answers, 13) and np.isfinite(curve).all()
    images, frames, sources = _stored_media(sample)
    assert sources == [0, 2, 3, 5]
    full = _teacher_forced(model, processor, sample, images, frames, sources, torch)
    # --baseline zero, and every pixel of the frames (and the image) lies in a seen cell: all black
    black = _teacher_forced(model, processor, sample, [np.zeros_like(i) for i in images], 0 * frames, sources, torch)
    np.testing.assert_allclose(record.full, full, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(record.baseline, black, rtol=1e-4, atol=1e-6)
    assert not np.allclose(full, black)  # the frames matter to this model at all
    for start, end in (("deletion", "insertion"), ("random_deletion", "random_insertion")):
        np.testing.assert_array_equal(getattr(record, start)[:, 0], record.full)
        np.testing.assert_array_equal(getattr(record, start)[:, -1], record.baseline)
        np.testing.assert_array_equal(getattr(record, end)[:, 0], record.baseline)
        np.testing.assert_array_equal(getattr(record, end)[:, -1], record.full)


@pytest.mark.slow  # the module fixture encodes, explains and scores two samples per family (~8 s)
def test_a_removed_cell_goes_on_both_frames_of_its_slice_and_nowhere_else(video_run):
    """Every video the processor got while scoring: each cell (2 x 3 over the 84 x 56 px frame: 28 px squares)
    is whole or black, identically on the two frames of a slice; the clip's first deletion step
    (12 steps over its 12 cells) removes exactly one cell, on its slice's two frames only."""
    from tamx import open_run

    run_path, _, _, seen, _ = video_run
    _, frames, _ = _stored_media(open_run(run_path).sample("clip"))
    assert seen and all(v.shape == frames.shape for v in seen)
    singles = set()
    for video in seen:
        black = (video == 0).all(axis=-1)
        kept = (video == frames).all(axis=-1)
        assert (black | kept).all()  # every pixel is the stored one or the baseline
        removed = black.reshape(4, 2, 28, 3, 28).all(axis=(2, 4))  # [frame, row, column] of cells
        assert np.array_equal(removed, ~kept.reshape(4, 2, 28, 3, 28).all(axis=(2, 4)))  # whole cells only
        assert np.array_equal(removed[0], removed[1]) and np.array_equal(removed[2], removed[3])
        if removed.sum() == 2:  # one cell of one slice
            (frame, row, column), _ = np.argwhere(removed)
            singles.add((frame // 2, row, column))
    assert singles  # single-cell steps were scored (the first step of each order of the clip)


@pytest.mark.slow  # the module fixture encodes, explains and scores two samples per family (~8 s)
def test_a_video_without_its_frames_is_refused_in_one_line(video_run, tmp_path):
    """A stored sample whose frames do not fit its slices fails alone, with what to do; so does a
    video when the processor has no video processor (torchvision missing)."""
    import shutil

    from tamx import open_run

    run_path, model, processor, _, _ = video_run
    copy = tmp_path / "run"
    shutil.copytree(run_path, copy)
    run = open_run(copy, mode="a")
    sample = run.sample("clip")
    sample.media = [m for m in sample.media if m.frame != 5]  # 3 frames for 2 slices
    run.write_sample(sample, overwrite=True)
    _cli("explain", copy, "--quiet")
    from tamx.pipeline.faithfulness.stage import FaithfulnessSettings, faithfulness_run

    report = faithfulness_run(copy, str(run.info.model_id), sample_ids=["clip"], model=model, processor=processor,
                              settings=FaithfulnessSettings(steps=2, random_orders=1), overwrite=True)  # fmt: skip
    assert list(report.failed) == ["clip"]
    assert "3 sampled frames for 2 slices" in report.failed["clip"] and "re-encode" in report.failed["clip"]
    assert "\n" not in report.failed["clip"]

    bare = type(processor).__new__(type(processor))
    bare.__dict__.update(processor.__dict__)
    bare.video_processor = None
    report = faithfulness_run(copy, str(run.info.model_id), sample_ids=["mixed"], model=model, processor=bare,
                              settings=FaithfulnessSettings(steps=2, random_orders=1), overwrite=True)  # fmt: skip
    assert list(report.failed) == ["mixed"] and "install torchvision" in report.failed["mixed"]
