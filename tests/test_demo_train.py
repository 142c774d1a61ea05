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

    settings = TrainSettings(vision_steps=2, steps=2, batch=4, checkpoint_every=1, eval_every=2, size=TINY)
    train(tmp_path, settings, log_every=1)
    first = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in first] == [("vision", 0), ("vision", 1), ("joint", 0), ("joint", 1)]
    assert all(np.isfinite(r[k]) for r in first for k in ("total", "cell"))
    assert all(np.isfinite(r[k]) for r in first[2:] for k in ("caption", "name"))
    # held-out scores at each stage's end: the vision heads' cells, then the exact answers too
    assert {"cell_colour", "cell_shape"} <= first[1].keys()
    assert {"exact", "exact_1", "exact_2", "exact_3", "exact_two_images", "colour_word"} <= first[-1].keys()
    # resuming with more steps continues where the first run stopped
    settings.steps = 3
    final = train(tmp_path, settings, log_every=1)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in log[len(first) :]] == [("joint", 2)]

    model, processor = load_model(str(final), device="cpu", dtype="fp32"), load_processor(str(final))
    scene = scenes(0, 1)[0]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    encoded = processor(text=text, images=[Image.fromarray(scene.image)], return_tensors="pt")
    # the training sequences are the processor's own: same ids, same pixels
    ids, _ = Sequences(processor.tokenizer).sample([scene])
    assert encoded["input_ids"][0].tolist() == ids[: encoded["input_ids"].shape[1]]
    assert torch.allclose(encoded["pixel_values"], pixels([scene.image]), atol=1e-5)
    with torch.no_grad():
        out = model(**encoded)
    assert out.logits.shape[1] == encoded["input_ids"].shape[1]


def test_the_same_seed_gives_bit_identical_weights(tmp_path):
    from safetensors.torch import load_file

    settings = TrainSettings(seed=3, vision_steps=2, steps=3, batch=4, size=TINY)
    first = load_file(train(tmp_path / "a", settings) / "model.safetensors")
    second = load_file(train(tmp_path / "b", settings) / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    settings.seed = 4
    other = load_file(train(tmp_path / "c", settings) / "model.safetensors")
    assert any(not torch.equal(first[k], other[k]) for k in first)
    # training leaves the process's torch settings as they were
    assert not torch.are_deterministic_algorithms_enabled()


def test_cell_targets_name_the_object_under_each_cell():
    import cv2
    from tamx.pipeline.demo.train import EDGE_COVER, GRID, Sequences, build_tokenizer, cell_targets

    from tamx.shapes import COLOURS, SHAPES, cell_labels, make_scene

    seqs = Sequences(build_tokenizer())
    scene = make_scene(np.random.default_rng(5), count=3)
    t = cell_targets(scene, seqs)
    labels = cell_labels(scene, GRID).ravel()
    for i, obj in enumerate(scene.objects):
        core = labels == i
        # the vision heads' classes on the core: colour and shape (+1; 0 is the background)
        assert (t.colour[core] == list(COLOURS).index(obj.colour) + 1).all()
        assert (t.shape[core] == SHAPES.index(obj.shape) + 1).all()
        # the core names the colour and the shape, half each
        assert (t.name_ids[core] == [seqs.word_ids[obj.colour], seqs.word_ids[obj.shape]]).all()
        assert (t.name_weights[core] == 0.5).all()
        # a cell the object covers partly names its colour by the share it covers, never above the core
        cover = cv2.resize(obj.mask.astype(np.float32), (GRID, GRID), interpolation=cv2.INTER_AREA).ravel()
        edge = (cover >= EDGE_COVER) & (labels < 0) & (t.name_ids[:, 0] == seqs.word_ids[obj.colour])
        assert edge.any()
        np.testing.assert_allclose(t.name_weights[edge, 0], np.minimum(cover[edge], 0.5), rtol=1e-6)
        assert (t.name_weights[edge, 1] == 0).all()
    background = t.name_weights.sum(1) == 0
    assert (t.colour[labels < 0] == 0).all() and (t.shape[labels < 0] == 0).all()
    assert (t.name_ids[background] == seqs.filler_id).all() and background.sum() > GRID * GRID // 2
