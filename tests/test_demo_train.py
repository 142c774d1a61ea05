"""The toy-VLM training script stays alive: a few steps of a tiny config train, resume and save a loadable model."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tamx.pipeline.demo.train import ModelSize, Sequences, TrainSettings, pixels, train  # noqa: E402

from tamx.shapes import scenes  # noqa: E402

TINY = ModelSize(
    lm_hidden=32,
    lm_layers=1,
    lm_heads=2,
    lm_intermediate=64,
    vision_hidden=32,
    vision_layers=1,
    vision_heads=2,
    vision_intermediate=64,
)


def test_train_resumes_and_saves_a_model_the_encoder_loads(tmp_path):
    from PIL import Image
    from tamx.pipeline.encode.loading import load_model, load_processor

    settings = TrainSettings(steps_text=2, steps_vision=2, batch=4, checkpoint_every=1, size=TINY)
    train(tmp_path, settings)
    first = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in first] == [("text", 0), ("text", 1), ("vision", 0), ("vision", 1)]
    assert all(np.isfinite(r["loss"]) for r in first)
    # resuming with more steps continues where the first run stopped
    settings.steps_vision = 3
    final = train(tmp_path, settings)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in log[len(first) :]] == [("vision", 2)]

    model, processor = load_model(str(final), device="cpu", dtype="fp32"), load_processor(str(final))
    scene = scenes(0, 1)[0]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    encoded = processor(text=text, images=[Image.fromarray(scene.image)], return_tensors="pt")
    # the training sequences are the processor's own: same ids, same pixels
    ids, _, _ = Sequences(processor.tokenizer).sample([scene], np.random.default_rng(0), text=False)
    assert encoded["input_ids"][0].tolist() == ids[: encoded["input_ids"].shape[1]]
    assert torch.allclose(encoded["pixel_values"], pixels([scene.image]), atol=1e-5)
    with torch.no_grad():
        out = model(**encoded)
    assert out.logits.shape[1] == encoded["input_ids"].shape[1]


def test_the_same_seed_gives_bit_identical_weights(tmp_path):
    from safetensors.torch import load_file

    settings = TrainSettings(seed=3, steps_text=3, steps_vision=3, batch=4, size=TINY)
    first = load_file(train(tmp_path / "a", settings) / "model.safetensors")
    second = load_file(train(tmp_path / "b", settings) / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    settings.seed = 4
    other = load_file(train(tmp_path / "c", settings) / "model.safetensors")
    assert any(not torch.equal(first[k], other[k]) for k in first)
    # training leaves the process's torch settings as they were
    assert not torch.are_deterministic_algorithms_enabled()
