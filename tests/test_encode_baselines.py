"""encode --layers / --attention on tiny models of every adapter family: the stored states and
attention equal what a separate forward pass of the model gives (output_hidden_states,
eager output_attentions), to 1e-5."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("PIL", reason="transformers' image processors need Pillow (pip install pillow)")

from tamx.pipeline.encode import inline_input, load_model  # noqa: E402
from tamx.pipeline.encode.adapters import adapter_for, supported_model_types  # noqa: E402

import tamx  # noqa: E402
from tamx.explain import read_positions  # noqa: E402
from tamx.layout import vision_positions  # noqa: E402
from tamx.methods import variant_title  # noqa: E402

from .test_encode_core import encode_one, loaded, media, model_inputs_for, tamx_cli  # noqa: E402, F401 (fixtures)

FAMILIES = supported_model_types()


def _forward(path, processor, stored, **kw):
    """A separate forward pass of a freshly loaded model over the stored prompt + answer (the
    media read again from the stored messages, video frames as encode samples them)."""
    model = load_model(str(path), device="cpu", dtype="fp32")
    if kw.get("output_attentions"):
        model.set_attn_implementation("eager")
    adapter = adapter_for(model, processor)
    inputs = dict(model_inputs_for(processor, stored, adapter.frame_multiple()))
    answer = torch.as_tensor(stored.input_ids[stored.answer_positions][None])
    inputs = adapter.extend_inputs(adapter.model_inputs(inputs), answer)
    with torch.no_grad():
        return model, adapter, model(**inputs, use_cache=False, **kw)


def assert_equals_a_separate_forward_pass(path, processor, stored):
    """The stored layer -2 states, every layer's attention and the rollout of a sample recorded
    with layers (-1, -2) and attention of all layers equal a separately loaded model's
    `norm(output_hidden_states[-2])` and eager `output_attentions`, to 1e-5."""
    positions = read_positions(stored)
    assert stored.lens_layers == [-2] and np.array_equal(stored.lens_positions, positions)
    _fresh, adapter, out = _forward(path, processor, stored, output_hidden_states=True)
    with torch.no_grad():  # hidden_states[-2]: the output of layer -2, before the final norm
        want = adapter.final_norm()(out.hidden_states[-2][:, positions])[0].numpy()
    np.testing.assert_allclose(stored.lens_hidden[0], want, atol=1e-5, rtol=1e-5)

    _fresh, adapter, out = _forward(path, processor, stored, output_attentions=True)
    count = len(out.attentions)
    assert stored.attention_layers == list(range(-1, -count - 1, -1))
    rows = np.maximum(np.concatenate([stored.answer_positions, stored.context_positions]) - 1, 0)
    cells = vision_positions(stored.vision_blocks)
    heads = [a[0].double().mean(dim=0).numpy() for a in out.attentions]
    n = len(stored.answer_positions)
    for index, layer in enumerate(stored.attention_layers):
        want = heads[layer][np.ix_(rows, cells)]
        np.testing.assert_allclose(stored.attention[index], want[:n], atol=1e-5)
        np.testing.assert_allclose(stored.attention_prompt[index], want[n:], atol=1e-5)
    rollout = np.eye(heads[0].shape[0])
    for weights in heads:  # Abnar and Zuidema 2020: identity-mixed, row-normalised, multiplied up
        mixed = 0.5 * weights + 0.5 * np.eye(len(weights))
        rollout = (mixed / mixed.sum(axis=1, keepdims=True)) @ rollout
    np.testing.assert_allclose(stored.rollout, rollout[np.ix_(rows[:n], cells)], atol=1e-5)
    np.testing.assert_allclose(stored.rollout_prompt, rollout[np.ix_(rows[n:], cells)], atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_layers_and_attention_equal_a_separate_forward_pass(loaded, family, media, tmp_path):  # noqa: F811
    sample = inline_input((media["wide"],), None, "What is in this picture?", "A cat sits on a red mat.", "t")
    run, _model, processor = encode_one(loaded, family, tmp_path, sample, layers=(-1, -2), attention=())
    stored = run.sample("t")
    assert stored.meta["settings"]["layers"] == [-2]
    assert_equals_a_separate_forward_pass(loaded(family)[0], processor, stored)


def test_generated_answers_record_layers_per_batch_row(loaded, media, tmp_path):  # noqa: F811
    """Under generate (batched, left-padded) every sample's layer states are its own row's."""
    from tamx.pipeline.encode import EncodeSettings, encode

    from tamx import open_run

    _path, model, processor = loaded("llava")
    samples = [
        inline_input((media["wide"],), None, "Describe the image.", None, "a"),
        inline_input((media["tall"],), None, "What is in this long picture, in detail?", None, "b"),
    ]
    settings = EncodeSettings(max_new_tokens=4, layers=(-2,))
    report = encode(model, processor, samples, tmp_path / "batched", settings=settings, batch_size=2)
    assert report.failed == {}
    for sample in samples:
        alone = encode(model, processor, [sample], tmp_path / sample.id, settings=settings)
        assert alone.failed == {}
        one, two = open_run(tmp_path / sample.id).sample(sample.id), open_run(tmp_path / "batched").sample(sample.id)
        np.testing.assert_allclose(two.lens_hidden, one.lens_hidden, atol=1e-4)


@pytest.mark.slow  # a subprocess encode (~18 s); qwen2_vl's in-process CLI test stays in the default suite
def test_the_cli_records_layers_and_attention_and_explain_reads_them(loaded, media, tmp_path):  # noqa: F811
    path = loaded("llava")[0]
    out = tmp_path / "run"
    result = tamx_cli(
        "encode", "--model", str(path), "--image", media["wide"], "--prompt", "Describe the image.",
        "--max-new-tokens", "4", "--out", str(out), "--id", "cat", "--layers", "-1,-2", "--attention", "-1",
        "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for args in (["--layer", "-2"], ["--method", "attention"], ["--method", "rollout"]):
        assert tamx_cli("explain", str(out), "--quiet", *args).returncode == 0
    info = tamx_cli("info", str(out))
    assert "attention" in info.stdout and "tam_l-2" in info.stdout
    bad = tamx_cli("encode", "--model", str(path), "--image", media["wide"], "--prompt", "x", "--out",
                   str(tmp_path / "bad"), "--layers", "-99", "--quiet")  # fmt: skip
    assert bad.returncode != 0 and "--layers" in bad.stderr and not (tmp_path / "bad").exists()


def assert_gradient_equals_a_finite_difference(path, processor, stored):
    """Grad-CAM at the recorded layer equals relu(d logit / d eps) where the layer's state at one
    cell is scaled by (1 + eps) (the directional derivative along the state is sum_c g_c h_c),
    for answer tokens 0 and 2 at the map's peak and three random cells, in float64."""
    from tamx.pipeline.encode.record import decoder_layers

    model = load_model(str(path), device="cpu", dtype="fp32").double()
    adapter = adapter_for(model, processor)
    inputs = dict(model_inputs_for(processor, stored, adapter.frame_multiple()))
    answer = torch.as_tensor(stored.input_ids[stored.answer_positions][None])
    inputs = adapter.extend_inputs(adapter.model_inputs(inputs), answer)
    inputs = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs.items()}
    cells = vision_positions(stored.vision_blocks)
    scale = {}

    def hook(module, args, output):
        states = output[0] if isinstance(output, tuple) else output
        if scale:
            states = states.clone()
            states[:, scale["at"]] *= 1 + scale["eps"]
        return (states, *output[1:]) if isinstance(output, tuple) else states

    handle = decoder_layers(adapter)[stored.gradient_layer].register_forward_hook(hook)
    rng = np.random.default_rng(0)
    try:
        for i in (0, 2):
            row, token = stored.answer_positions[i] - 1, stored.input_ids[stored.answer_positions[i]]
            for v in [int(np.argmax(stored.gradient[i])), *rng.choice(len(cells), 3, replace=False).tolist()]:
                values = []
                for eps in (1e-4, -1e-4):
                    scale.update(at=int(cells[v]), eps=eps)
                    with torch.no_grad():
                        values.append(float(model(**inputs, use_cache=False).logits[0, row, token]))
                finite = max((values[0] - values[1]) / 2e-4, 0.0)
                assert abs(stored.gradient[i, v] - finite) <= 1e-3 * max(1.0, abs(finite)), (i, v)
                scale.clear()
    finally:
        handle.remove()
    assert stored.gradient.max() > 0


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.slow
def test_gradients_equal_a_finite_difference(loaded, family, media, tmp_path):  # noqa: F811
    sample = inline_input((media["wide"],), None, "What is in this picture?", "A cat sits on a red mat.", "g")
    run, _model, processor = encode_one(loaded, family, tmp_path, sample, gradients=-2)
    stored = run.sample("g")
    assert stored.gradient_layer == -2 and stored.meta["settings"]["gradients"] == -2
    assert_gradient_equals_a_finite_difference(loaded(family)[0], processor, stored)


CLI_FAST = "qwen2_vl"  # one family in the default suite; the others take 1-6 s each here (slow)


@pytest.mark.parametrize("family", [f if f == CLI_FAST else pytest.param(f, marks=pytest.mark.slow) for f in FAMILIES])
def test_every_family_records_and_explains_baselines_through_the_cli(loaded, family, media, tmp_path):  # noqa: F811
    """`tamx encode --layers --attention --gradients` on a saved tiny model of each family, in
    process (the command's own model and processor loading: without torchvision the Qwen family,
    InternVL and OneVision through the image-only processor), then `tamx explain --layer /
    --method` and `tamx info`: the fields' shapes, the eager reference, the variants."""
    from .refusals import tamx_cli as cli
    from .refusals import tamx_output

    path, model, processor = loaded(family)
    out = tmp_path / "run"
    result = cli(
        "encode", "--model", path, "--image", media["wide"], "--prompt", "What is in this picture?",
        "--answer", "A cat sits on a red mat.", "--out", out, "--id", "cat", "--device", "cpu", "--dtype", "fp32",
        "--layers", "-1,-2", "--attention", "all", "--gradients", "-2", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stored = tamx.open_run(out).sample("cat")
    settings = stored.meta["settings"]
    assert settings["layers"] == [-2] and settings["gradients"] == -2
    n, m, v = len(stored.answer_positions), len(stored.context_positions), stored.vision_size
    layers = model.config.get_text_config().num_hidden_layers
    width = model.config.get_text_config().hidden_size
    assert stored.lens_hidden.shape == (1, len(stored.lens_positions), width)
    assert stored.attention.shape == (layers, n, v) and stored.attention_prompt.shape == (layers, m, v)
    assert stored.rollout.shape == (n, v) and stored.rollout_prompt.shape == (m, v)
    assert stored.gradient_layer == -2 and stored.gradient.shape == (n, v) and stored.gradient_prompt.shape == (m, v)
    for name in ("lens_hidden", "attention", "attention_prompt", "rollout", "rollout_prompt", "gradient"):
        assert np.isfinite(np.asarray(getattr(stored, name), dtype=np.float64)).all(), name
    assert stored.gradient.min() >= 0 and stored.gradient.max() > 0 and stored.gradient_prompt.min() >= 0
    assert_equals_a_separate_forward_pass(path, processor, stored)

    for args in (["--layer", "-2"], ["--method", "attention"], ["--method", "rollout"], ["--method", "gradient"]):
        tamx_output("explain", out, "--quiet", *args)
    run = tamx.open_run(out)
    assert run.variants("cat") == ["attention", "gradient_l-2", "rollout", "tam_l-2"]
    np.testing.assert_array_equal(run.maps("cat", "attention").final, stored.attention.mean(axis=0))
    np.testing.assert_array_equal(run.maps("cat", "rollout").final, stored.rollout)
    np.testing.assert_array_equal(run.maps("cat", "gradient_l-2").final, stored.gradient)
    lens = run.maps("cat", "tam_l-2")
    assert lens.final.shape == (n, v) and np.isfinite(lens.final).all()
    assert run.maps_settings("cat", "tam_l-2")["layer"] == -2
    (summary,) = json.loads(tamx_output("info", out, "--json"))["samples"]
    assert summary["variants"] == ["attention", "gradient_l-2", "rollout", "tam_l-2"]
    assert set(summary["baseline_bytes"]) == {"attention", "layers", "gradients"}
    text = tamx_output("info", out)
    assert "variants attention (1), gradient_l-2 (1), rollout (1), tam_l-2 (1)" in text
    assert "baselines attention " in text and ", gradients " in text and ", layers " in text
    titles = {name: variant_title(name, run.maps_settings("cat", name)) for name in summary["variants"]}
    assert titles == {
        "attention": "attention (head mean)",
        "gradient_l-2": "Grad-CAM, layer -2",
        "rollout": "rollout",
        "tam_l-2": "TAM, layer -2",
    }


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.startswith("qwen")])
@pytest.mark.slow
def test_qwen_videos_record_baselines_through_the_cli(loaded, family, media, tmp_path, monkeypatch):  # noqa: F811
    """An image and a video (two temporal slices) through `tamx encode --layers --attention
    --gradients`: the attention and rollout equal the eager reference over both blocks, Grad-CAM a
    finite difference. Without torchvision the command's own processor has no video processor;
    the numpy double of the encode tests is attached to it (docs/encode.md, "Without torchvision")."""
    from tamx.pipeline.encode import loading

    from .refusals import tamx_output
    from .tiny_models import QwenVideoProcessorDouble

    load = loading.load_processor

    def load_with_video(path):
        processor = load(path)
        if getattr(processor, "video_processor", None) is None:
            patch = processor.image_processor.patch_size
            processor.video_processor = QwenVideoProcessorDouble(processor.image_processor, patch_size=patch)
        return processor

    monkeypatch.setattr(loading, "load_processor", load_with_video)
    path, _model, processor = loaded(family)
    out = tmp_path / "run"
    tamx_output(
        "encode", "--model", path, "--image", media["wide"], "--video", media["video"], "--prompt", "Which one?",
        "--frames", "4",
        "--answer", "The video shows two people.", "--out", out, "--id", "clip", "--device", "cpu", "--dtype", "fp32",
        "--layers", "-1,-2", "--attention", "all", "--gradients", "-2", "--quiet",
    )  # fmt: skip
    stored = tamx.open_run(out).sample("clip")
    video = [b for b in stored.vision_blocks if b.kind == "video"]  # Qwen3-VL: one block per slice
    assert stored.vision_blocks[0].kind == "image" and sum(b.grid[0] for b in video) == 2
    assert_equals_a_separate_forward_pass(path, processor, stored)
    assert_gradient_equals_a_finite_difference(path, processor, stored)
    tamx_output("explain", out, "--quiet", "--method", "gradient")
    assert tamx.open_run(out).maps("clip", "gradient_l-2").final.shape == stored.gradient.shape
