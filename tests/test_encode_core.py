"""Encode on tiny LLaVA-1.5 and Qwen2-VL models: capture, grids, teacher forcing, errors, resume."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tamx

torch = pytest.importorskip("torch")
pytest.importorskip("PIL", reason="transformers' image processors need Pillow (pip install pillow)")

from tamx.pipeline.encode import EncodeInput, EncodeSettings, encode, inline_input, load_model, load_processor  # noqa: E402
from tamx.pipeline.encode.adapters import (  # noqa: E402
    AdapterError,
    adapter_class,
    adapter_for,
    supported_model_types,
)

from tamx.layout import map_frames  # noqa: E402

from .tiny_models import QwenVideoProcessorDouble, with_answer, write_image, write_video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = supported_model_types()  # every model_type of the adapter registry


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def tamx_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "tamx.pipeline", *args], capture_output=True, text=True, env=_env(), cwd=ROOT, **kwargs
    )


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    return {
        "wide": write_image(folder / "wide.png", 60, 100, seed=1),
        "tall": write_image(folder / "tall.jpg", 90, 40, seed=2),
        "video": write_video(folder / "clip.avi", 6, 56, 84, seed=3),
        "folder": folder,
    }


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    cache = {}

    def get(family):
        if family not in cache:
            path = tiny_model_dir(family)
            processor = load_processor(str(path))
            if family.startswith("qwen") and getattr(processor, "video_processor", None) is None:
                patch = processor.image_processor.patch_size
                processor.video_processor = QwenVideoProcessorDouble(processor.image_processor, patch_size=patch)
            cache[family] = (path, load_model(str(path), device="cpu", dtype="fp32"), processor)
        return cache[family]

    return get


def model_inputs_for(processor, sample, media_items):
    """Processor inputs of the stored prompt (independent of encode's own path)."""
    from tamx.pipeline.encode.inputs import load_media

    items = load_media(sample.id, sample.messages, sample.meta["settings"]["num_frames"], media_items)
    images = [m.pixels for m in items if m.kind == "image"] or None
    videos = [m.pixels for m in items if m.kind == "video"] or None
    kwargs = {"do_sample_frames": False} if videos else {}
    if videos:
        from transformers.video_utils import VideoMetadata

        kwargs["video_metadata"] = [
            VideoMetadata(total_num_frames=6, fps=4.0, frames_indices=list(m.frame_indices))
            for m in items
            if m.kind == "video"
        ]
    bos = processor.tokenizer.bos_token
    kwargs["add_special_tokens"] = not (bos and sample.meta["prompt"].startswith(bos))
    return processor(text=[sample.meta["prompt"]], images=images, videos=videos, return_tensors="pt", **kwargs)


def encode_one(loaded, family, tmp_path, sample, **settings):
    _path, model, processor = loaded(family)
    out = tmp_path / f"run-{family}"
    report = encode(model, processor, [sample], out, settings=EncodeSettings(**settings))
    assert report.failed == {}, report.failed
    return tamx.open_run(out), model, processor


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_tokens_and_teacher_forced_hidden(loaded, family, media, tmp_path):
    """(a) argmax over stored hidden x stored rows reproduces the answer; (b) hidden = one forward pass."""
    sample = inline_input((media["wide"],), None, "Describe the image in one sentence.", None, "greedy")
    run, model, processor = encode_one(loaded, family, tmp_path, sample, max_new_tokens=8)
    stored = run.sample("greedy")
    hidden = stored.hidden_float32()
    assert hidden.shape == (len(stored.input_ids) - 1, model.config.get_text_config().hidden_size)
    assert len(stored.answer_positions) >= 1
    rows, bias = stored.lm_head.weights(stored.lm_head.ids)
    scores = hidden[stored.answer_positions - 1] @ rows.T + (0 if bias is None else bias)
    assert np.array_equal(stored.lm_head.ids[scores.argmax(1)], stored.input_ids[stored.answer_positions])
    # the full head agrees, and the top candidate is the generated token with the largest log-prob
    full = model.get_output_embeddings().weight.detach().numpy()
    assert np.array_equal(
        (hidden[stored.answer_positions - 1] @ full.T).argmax(1), stored.input_ids[stored.answer_positions]
    )
    assert np.array_equal(stored.candidate_ids[:, 0], stored.input_ids[stored.answer_positions])
    assert np.all(np.diff(stored.candidate_logprobs, axis=1) <= 0) and np.all(stored.candidate_logprobs <= 0)
    assert [row[0] for row in stored.candidate_tokens] == [stored.tokens[p] for p in stored.answer_positions]
    np.testing.assert_array_equal(stored.answer_logprobs, stored.candidate_logprobs[:, 0])

    inputs = model_inputs_for(processor, stored, 1)
    prompt_length = inputs["input_ids"].shape[1]
    assert np.array_equal(inputs["input_ids"][0].numpy(), stored.input_ids[:prompt_length])
    answer = torch.as_tensor(stored.input_ids[prompt_length:])[None]
    inputs = with_answer(inputs, answer)
    with torch.inference_mode():
        reference = model.model(**inputs).last_hidden_state[0].numpy()
    np.testing.assert_allclose(hidden, reference[:-1], rtol=1e-4, atol=1e-4)
    # context: the prompt text only, never scaffolding or placeholders
    assert "".join(stored.tokens[p] for p in stored.context_positions) == "Describe the image in one sentence."


@pytest.mark.parametrize("family", FAMILIES)
def test_teacher_forcing_stores_the_given_answer(loaded, family, media, tmp_path):
    """(e) --answer: exactly the given answer's tokens, after the prompt."""
    answer = "The answer is a small house with a green door."
    sample = inline_input((media["tall"],), None, "What is in this picture?", answer, "forced")
    run, _model, processor = encode_one(loaded, family, tmp_path, sample)
    stored = run.sample("forced")
    tokenizer = processor.tokenizer
    assert tokenizer.decode(stored.input_ids[stored.answer_positions].tolist()) == answer
    assert stored.answer_positions[-1] == len(stored.input_ids) - 1
    assert stored.meta["mode"] == "teacher-forced" and stored.meta["answer"] == answer
    assert stored.candidate_ids.shape == (len(stored.answer_positions), 3)
    # the forced tokens' own probabilities (the report shows them): where the forced token is the
    # model's top candidate, its log-prob is the top candidate's
    assert stored.answer_logprobs.shape == (len(stored.answer_positions),) and np.all(stored.answer_logprobs <= 0)
    top = stored.candidate_ids[:, 0] == stored.input_ids[stored.answer_positions]
    np.testing.assert_allclose(stored.answer_logprobs[top], stored.candidate_logprobs[top, 0], atol=1e-4)
    assert np.all(stored.answer_logprobs[~top] <= stored.candidate_logprobs[~top, 0] + 1e-4), "never above the best"


def test_multi_turn_context_includes_earlier_answers(loaded, media, tmp_path):
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "image", "image": media["wide"]}, {"type": "text", "text": "What is it?"}],
        },
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And the mat?"},
        {"role": "assistant", "content": "It is red."},
    ]
    run, _, _ = encode_one(loaded, "qwen2_vl", tmp_path, EncodeInput("turns", messages))
    stored = run.sample("turns")
    context = "".join(stored.tokens[p] for p in stored.context_positions)
    assert context == "What is it?A cat.And the mat?"
    assert "".join(stored.tokens[p] for p in stored.answer_positions) == "It is red."


def _qwen_grids(model, inputs, blocks):
    """Qwen: one block per image, the processor's image_grid_thw merged spatially."""
    merge = model.config.vision_config.spatial_merge_size
    expected = [(t, h // merge, w // merge) for t, h, w in inputs["image_grid_thw"].tolist()]
    assert [b.grid for b in blocks] == expected
    assert expected[0][2] > expected[0][1] and expected[1][1] > expected[1][2]  # wide, then tall


def _clip_grids(model, inputs, blocks, separated=False):
    """LLaVA (and OneVision with several images: the base view, then one image_newline separator
    each): the vision tower's square patch grid per image."""
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    assert [b.grid for b in blocks] == [(1, side, side)] * 2
    assert all((b.unmapped > 0) == separated for b in blocks)
    assert all(b.separator == ("image_newline" if b.unmapped else "") for b in blocks)


def _pooled_grid(blocks, per_image):
    """Pooled / pixel-shuffled fixed grids: as many cells as the config's tokens per image."""
    ((t, h, w),) = {b.grid for b in blocks}
    assert t == 1 and h == w and h * w == per_image


def _gemma3_grids(model, inputs, blocks):
    _pooled_grid(blocks, model.config.mm_tokens_per_image)


def _internvl_grids(model, inputs, blocks):
    """InternVL tiles the 100x60 image: several blocks of media 0, one per tile (and a thumbnail)."""
    _pooled_grid(blocks, model.config.image_seq_length)
    assert int(inputs["pixel_values"].shape[0]) == len(blocks)
    assert blocks[-1].label == "thumbnail" or len(blocks) == 2


# family -> the check of its blocks against the processor and config, for one wide and one tall image
EXPECTED_BLOCKS = {
    "llava": _clip_grids,
    "llava_onevision": lambda model, inputs, blocks: _clip_grids(model, inputs, blocks, separated=True),
    "qwen2_vl": _qwen_grids,
    "qwen2_5_vl": _qwen_grids,
    "qwen3_vl": _qwen_grids,
    "gemma3": _gemma3_grids,
    "internvl": _internvl_grids,
}
TILED = {"internvl"}  # families that make several blocks of one image


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_match_placeholders_for_non_square_and_several_images(loaded, family, media, tmp_path):
    """(c) the blocks of each image (one, or its tiles + thumbnail), grids matching the processor's
    placeholder counts, every block placed on its image (a box and the image size recorded)."""
    sample = inline_input((media["wide"], media["tall"]), None, "Compare the two images.", "A house", "several")
    run, model, processor = encode_one(loaded, family, tmp_path, sample)
    stored = run.sample("several")
    image_token = run.info.special_tokens["image_token"]
    assert image_token == model.config.image_token_id
    assert sorted({b.media for b in stored.vision_blocks}) == [0, 1]
    assert [b.media for b in stored.vision_blocks] == sorted(b.media for b in stored.vision_blocks)
    if family not in TILED:
        assert [b.media for b in stored.vision_blocks] == [0, 1]
    placeholders = int((stored.input_ids == image_token).sum())
    assert sum(b.tokens + b.unmapped for b in stored.vision_blocks) == placeholders
    sizes = {0: (100, 60), 1: (40, 90)}
    assert all(b.box is not None and b.image_size == sizes[b.media] for b in stored.vision_blocks)
    EXPECTED_BLOCKS[family](model, model_inputs_for(processor, stored, 1), stored.vision_blocks)
    for media_index in (0, 1):
        blocks = [b for b in stored.vision_blocks if b.media == media_index]
        start, end = blocks[0].start, blocks[-1].stop + blocks[-1].unmapped
        assert np.all(stored.input_ids[start:end] == image_token)
        assert stored.input_ids[end] != image_token and stored.input_ids[start - 1] != image_token


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_video_block_covers_frame_pairs(loaded, family, media, tmp_path):
    """(c) a video: T = frames / temporal_patch_size, each slice lists the source frames it merges."""
    sample = inline_input((media["wide"],), media["video"], "Which one shows more people?", "The video", "video")
    run, _model, processor = encode_one(loaded, family, tmp_path, sample, num_frames=4)
    stored = run.sample("video")
    image_block, video_block = stored.vision_blocks
    assert (image_block.kind, video_block.kind) == ("image", "video")
    assert video_block.media == 1 and video_block.grid[0] == 2
    assert video_block.frames == ((0, 2), (3, 5))
    assert video_block.times == ((0.0, 0.5), (0.75, 1.25))  # the clip's 4 fps
    assert video_block.box == (0.0, 0.0, 84.0, 56.0) and video_block.image_size == (84, 56)
    assert [f.label for f in map_frames(stored.vision_blocks)] == ["image", "t=0.00s", "t=0.75s"]
    video_token = run.info.special_tokens["video_token"]
    assert int((stored.input_ids == video_token).sum()) == video_block.size
    inputs = model_inputs_for(processor, stored, 2)
    t, h, w = inputs["video_grid_thw"][0].tolist()
    assert video_block.grid == (t, h // 2, w // 2)
    assert np.array_equal(
        stored.input_ids, np.concatenate([inputs["input_ids"][0].numpy(), stored.input_ids[stored.answer_positions]])
    )
    frames = [m.frame for m in stored.media if m.kind == "video-frame"]
    assert frames == [0, 2, 3, 5]


def test_qwen3_vl_video_has_one_block_per_timestamped_slice(loaded, media, tmp_path):
    """(c) Qwen3-VL: timestamp text between slices, so every slice is its own (1, H, W) block."""
    sample = inline_input((media["tall"],), media["video"], "Which one shows more people?", "The video", "video")
    run, model, processor = encode_one(loaded, "qwen3_vl", tmp_path, sample, num_frames=4)
    stored = run.sample("video")
    image_block, *slices = stored.vision_blocks
    assert image_block.kind == "image" and [b.kind for b in slices] == ["video", "video"]
    assert [b.media for b in slices] == [1, 1]
    assert [b.frames for b in slices] == [((0, 2),), ((3, 5),)]
    assert [b.times for b in slices] == [((0.0, 0.5),), ((0.75, 1.25),)]
    assert all(b.box == (0.0, 0.0, 84.0, 56.0) for b in slices)
    inputs = model_inputs_for(processor, stored, 2)
    t, h, w = inputs["video_grid_thw"][0].tolist()
    merge = model.config.vision_config.spatial_merge_size
    assert t == 2 and all(b.grid == (1, h // merge, w // merge) for b in slices)
    video_token = run.info.special_tokens["video_token"]
    assert int((stored.input_ids == video_token).sum()) == t * (h // merge) * (w // merge)
    between = "".join(stored.tokens[slices[0].stop : slices[1].start])
    assert "seconds>" in between  # the timestamp text sits between the slices ...
    context = "".join(stored.tokens[p] for p in stored.context_positions)
    assert context == "Which one shows more people?"  # ... and is not context


def test_unsupported_architecture_names_the_missing_adapter():
    with pytest.raises(AdapterError, match=r"no tamx adapter for model_type 'blip_2'.*ADAPTERS"):
        adapter_class("blip_2")


@pytest.mark.slow
def test_bad_samples_fail_alone_and_are_listed(loaded, media, tmp_path):
    """(f) each bad sample gets a clear error naming it; the rest of the manifest runs."""
    broken_video = media["folder"] / "broken.avi"
    broken_video.write_bytes(b"not a video at all")
    rows = [
        {
            "id": "good",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "image": "wide.png"}, {"type": "text", "text": "Describe it."}],
                }
            ],
        },
        {
            "id": "missing-image",
            "messages": [
                {"role": "user", "content": [{"type": "image", "image": "nope.png"}, {"type": "text", "text": "Hi"}]}
            ],
        },
        {
            "id": "bad-video",
            "messages": [
                {"role": "user", "content": [{"type": "video", "video": "broken.avi"}, {"type": "text", "text": "Hi"}]}
            ],
        },
        {
            "id": "empty-prompt",
            "messages": [
                {"role": "user", "content": [{"type": "image", "image": "wide.png"}, {"type": "text", "text": "  "}]}
            ],
        },
        {"id": "no-image", "messages": [{"role": "user", "content": "Describe the image."}]},
    ]
    manifest = media["folder"] / "bad.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    path, model, processor = loaded("qwen2_vl")
    report = encode(model, processor, manifest, tmp_path / "run", settings=EncodeSettings(max_new_tokens=3))
    assert report.done == ["good"]
    assert set(report.failed) == {"missing-image", "bad-video", "empty-prompt", "no-image"}
    assert "nope.png does not exist" in report.failed["missing-image"]
    assert "cannot read video" in report.failed["bad-video"]
    assert "prompt is empty" in report.failed["empty-prompt"]
    assert "no image or video" in report.failed["no-image"]
    # the command line lists them at the end and exits 1
    result = tamx_cli(
        "encode", "--model", str(path), "--manifest", str(manifest), "--out", str(tmp_path / "cli"),
        "--max-new-tokens", "3", "--quiet",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    tail = result.stderr[result.stderr.index("4 sample(s) failed:") :]
    for sample_id in ("missing-image", "bad-video", "empty-prompt", "no-image"):
        assert f"  {sample_id}: " in tail
    assert tamx.open_run(tmp_path / "cli").sample_ids() == ["good"]


def test_unknown_model_is_a_clear_error(tmp_path, media):
    from click.testing import CliRunner
    from tamx.pipeline.cli import main

    args = ["encode", "--model", str(tmp_path / "no-such-model"), "--image", str(media["wide"]), "--prompt", "Hi"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "run")])  # in process: torch is loaded once
    assert result.exit_code == 2, result.output  # checked before the model loads: a bad option
    assert "is not a local folder, nor a Hugging Face model id" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_killed_run_resumes_with_every_sample_once(tiny_model_dir, media, tmp_path):
    """(d) kill -9 mid-manifest, resume: every sample stored once, every checksum valid."""
    path = tiny_model_dir("llava")
    rows = [
        {
            "id": f"s{i}",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": "wide.png"},
                        {"type": "text", "text": f"Describe image {i}."},
                    ],
                }
            ],
        }
        for i in range(8)
    ]
    manifest = media["folder"] / "resume.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "run"
    args = ["encode", "--model", str(path), "--manifest", str(manifest), "--out", str(out), "--quiet"]
    args += ["--max-new-tokens", "24"]
    process = subprocess.Popen([sys.executable, "-m", "tamx.pipeline", *args], env=_env(), cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        done = (out / "samples").is_dir() and sum(1 for _ in (out / "samples").glob("s*/sample.json"))
        if done and done >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    interrupted = tamx.open_run(out).sample_ids()
    assert 2 <= len(interrupted) < 8
    result = tamx_cli(*args)
    assert result.returncode == 0, result.stderr
    run = tamx.open_run(out)
    assert run.sample_ids() == sorted(r["id"] for r in rows)
    assert run.incomplete_ids() == []
    for sample_id in run.sample_ids():
        run.sample(sample_id)  # reads every chunk: crc32c-checked


@pytest.mark.slow
def test_encode_explain_info_end_to_end(tiny_model_dir, media, tmp_path):
    path = tiny_model_dir("qwen2_vl")
    out = tmp_path / "run"
    result = tamx_cli(
        "encode", "--model", str(path), "--image", media["wide"], "--prompt", "Describe the image.",
        "--max-new-tokens", "5", "--out", str(out), "--id", "cat",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 sample(s) encoded" in result.stderr
    assert tamx_cli("explain", str(out), "--quiet").returncode == 0
    info = tamx_cli("info", str(out), "--json")
    summary = json.loads(info.stdout)
    assert summary["model"]["special_tokens"]["image_token"] >= 0
    (sample,) = summary["samples"]
    assert sample["id"] == "cat" and sample["variants"] == ["tam"] and sample["vision"] == ["image 1x2x4"]
    maps = tamx.open_run(out).maps("cat")
    assert maps.final.shape == (sample["answer_tokens"], 8)


def test_checkpoint_generation_settings_do_not_change_greedy_answer(loaded, media, tmp_path):
    """A checkpoint's repetition penalty would make tokens differ from the argmax explain recomputes."""
    _, model, _ = loaded("qwen2_vl")
    saved = model.generation_config.repetition_penalty
    model.generation_config.repetition_penalty = 50.0
    try:
        sample = inline_input((media["wide"],), None, "Describe the image.", None, "penalty")
        run, _, _ = encode_one(loaded, "qwen2_vl", tmp_path, sample, max_new_tokens=12)
    finally:
        model.generation_config.repetition_penalty = saved
    stored = run.sample("penalty")
    rows, _ = stored.lm_head.weights(stored.lm_head.ids)
    argmax = stored.lm_head.ids[(stored.hidden_float32()[stored.answer_positions - 1] @ rows.T).argmax(1)]
    assert np.array_equal(argmax, stored.input_ids[stored.answer_positions])


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_equals_one_at_a_time(loaded, family, media, tmp_path, caplog):
    """--batch-size: left-padded batched generate stores what one-at-a-time encoding stores."""
    _, model, processor = loaded(family)
    samples = [
        inline_input((media["wide"],), None, "Describe the image in one sentence.", None, "a"),
        inline_input((media["tall"],), None, "What is in this picture? A cat sits on a red mat.", None, "b"),
        inline_input((media["wide"], media["tall"]), None, "Compare them.", None, "c"),
        inline_input((media["tall"],), None, "What is it?", "A house.", "d"),
    ]
    settings = EncodeSettings(max_new_tokens=6)
    one = encode(model, processor, samples, tmp_path / "one", settings=settings)
    with caplog.at_level(logging.INFO, logger="tamx.pipeline.encode.stage"):
        many = encode(model, processor, samples, tmp_path / "many", settings=settings, batch_size=4)
    assert "batched generate failed" not in caplog.text  # the three generated samples really shared a batch
    assert one.failed == many.failed == {} and sorted(many.done) == ["a", "b", "c", "d"]
    run_one, run_many = tamx.open_run(tmp_path / "one"), tamx.open_run(tmp_path / "many")
    for sample_id in "abcd":
        a, b = run_one.sample(sample_id), run_many.sample(sample_id)
        for name in ("input_ids", "answer_positions", "context_positions", "candidate_ids"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), (sample_id, name)
        assert a.vision_blocks == b.vision_blocks
        np.testing.assert_allclose(a.hidden_float32(), b.hidden_float32(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(a.candidate_logprobs, b.candidate_logprobs, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_encode_a_mask_dataset_then_eval(tiny_model_dir, media, tmp_path):
    """`tamx encode --dataset folder --data DIR` writes the manifest with the paper's prompt;
    its sample ids are the records' ids, so `tamx eval` finds their masks."""
    data = tmp_path / "data"
    data.mkdir()
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(data / "scene.png"), cv2.imread(str(media["wide"])))
    label = np.zeros((60, 100), np.uint8)
    label[10:40, 20:70] = 3
    cv2.imwrite(str(data / "scene_label.png"), label)
    (data / "anno.json").write_text(json.dumps([["scene.png", "a cat", "scene_label.png", {"cat": 3}]]))
    out = tmp_path / "run"
    result = tamx_cli(
        "encode", "--model", str(tiny_model_dir("llava")), "--dataset", "folder", "--data", str(data),
        "--max-new-tokens", "4", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = [json.loads(line) for line in (tmp_path / "run.folder.jsonl").read_text().splitlines()]
    assert [m["id"] for m in manifest] == ["scene"] and tamx.open_run(out).sample_ids() == ["scene"]
    assert manifest[0]["messages"][0]["content"][1]["text"].startswith("Write a one-sentence caption")
    assert tamx_cli("explain", str(out), "--quiet").returncode == 0
    scored = tamx_cli("eval", str(out), "--dataset", "folder", "--data", str(data), "--quiet")
    assert scored.returncode == 0, scored.stderr
    assert "tam" in scored.stdout and (out / "eval" / "folder" / "summary.json").is_file()
    both = tamx_cli(
        "encode", "--model", "x", "--dataset", "folder", "--data", str(data), "--prompt", "p", "--out", str(out)
    )
    assert both.returncode == 2 and "give one of --manifest" in both.stderr


def test_special_tokens_are_resolved_once_per_adapter(loaded, monkeypatch):
    _, model, processor = loaded("internvl")
    adapter = adapter_for(model, processor)
    calls = []
    resolve = adapter.resolve_special_tokens
    monkeypatch.setattr(adapter, "resolve_special_tokens", lambda: calls.append(1) or resolve())
    first = adapter.special_tokens()
    first["image_token"] = -1  # a caller's copy: the adapter's roles stay as resolved
    again = adapter.special_tokens()
    assert again["image_token"] == model.config.image_token_id and "video_token" not in again  # InternVL's own
    assert adapter.special_ids() >= {again["image_token"], again["turn_start"]}
    assert len(calls) == 1
