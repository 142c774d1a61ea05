"""The report's data: packing, joint normalisation, words, pages and figures (no browser)."""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main

from tamx import explain_sample, open_run
from tamx.report import colormap_lut, normalise_jointly, pack_array, page_data, sample_page, unpack_array
from tamx.synthetic import synthetic_run_info, synthetic_sample
from tamx.words import group_words, word_index

from .conftest import CJK_FONT_MISSING


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_pack_unpack_round_trip(dtype):
    values = (np.random.default_rng(0).random((3, 5, 7)) * 200).astype(dtype)
    packed = pack_array(values)
    assert packed["shape"] == [3, 5, 7] and packed["dtype"] == np.dtype(dtype).name
    np.testing.assert_array_equal(unpack_array(json.loads(json.dumps(packed))), values)


def test_pack_refuses_other_dtypes():
    with pytest.raises(ValueError, match="uint8, uint16 or float32"):
        pack_array(np.zeros(3, np.float64))


def test_joint_normalisation_shares_min_and_max():
    maps = np.array([[0.0, 2.0, 4.0], [1.0, 1.0, 1.0]], np.float32)
    text = np.array([[8.0], [1.0]], np.float32)
    q_maps, q_text = normalise_jointly(maps, text)
    assert q_maps[0].tolist() == [0, 64, 128] and q_text[0].tolist() == [255]
    assert not q_maps[1].any() and not q_text[1].any(), "a constant row is all zeros"
    three_d, _ = normalise_jointly(np.arange(12, dtype=np.float32).reshape(2, 2, 3))
    assert three_d.shape == (2, 2, 3) and three_d[0].max() == 255 and three_d[1].min() == 0


def test_colormap_is_opencv_jet_in_rgb():
    lut = colormap_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    bgr = cv2.applyColorMap(np.array([[0, 128, 255]], np.uint8), cv2.COLORMAP_JET)[0]
    np.testing.assert_array_equal(lut[[0, 128, 255]], bgr[:, ::-1])


def test_words_start_at_spaces_and_punctuation():
    tokens = ["A", " red", " circ", "le", ",", " and", " a", " blue", " square", ".", "It"]
    assert word_index(tokens) == [0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9]
    assert group_words([" bl", "ue", "!"]) == [[0, 1], [2]]


def test_page_data_layout_and_packed_maps():
    sample = synthetic_sample("s", grids=[(1, 4, 5), (2, 3, 3)])
    maps = explain_sample(sample)
    data = page_data(sample, {"tam": maps}, synthetic_run_info())
    assert data["vision_size"] == 20 + 18 and data["default_variant"] == "tam"
    kinds = [segment["kind"] for segment in data["segments"]]
    assert kinds.count("vision") == 2 and "prompt" in kinds and kinds.count("answer") == 1
    assert [f["offset"] for f in data["frames"]] == [0, 20, 29]
    assert data["frames"][2]["frames"] == [2, 3] and len(data["frames"][2]["images"]) == 2
    assert [b["assumed"] for b in data["blocks"]] == [True, True]
    answer = unpack_array(data["variants"]["tam"]["answer"])
    expected, _ = normalise_jointly(maps.final, np.concatenate([maps.text_relevance, maps.answer_relevance], axis=1))
    np.testing.assert_array_equal(answer, expected)
    assert unpack_array(data["variants"]["tam"]["candidates"]).shape == (20, 3, 38)
    assert data["candidates"][0][0] == sample.candidate_tokens[0][0]


EVIL = ["</script><script>alert(1)</script>", "<img src=x onerror=alert(1)>", "\"quoted\" and 'single'"]


def test_page_source_escapes_every_string():
    sample = synthetic_sample("evil", grids=[(1, 3, 3)], n_context=3, n_answer=3)
    sample.tokens = list(sample.tokens)
    for k, p in enumerate(sample.context_positions):
        sample.tokens[p] = EVIL[k]
    for k, p in enumerate(sample.answer_positions):
        sample.tokens[p] = EVIL[k]
    sample.candidate_tokens = [EVIL for _ in range(3)]
    info = synthetic_run_info()
    info.model_id = "<b>model</b>"
    info.extra["notice"] = "<script>alert('notice')</script>"
    html = sample_page(page_data(sample, {"tam": explain_sample(sample)}, info))
    assert html.count("<script") == 2, "only the data block and the page's own script"
    assert "<img src=x" not in html and "<b>model</b>" not in html
    data = json.loads(re.search(r'<script type="application/json" id="tamx-data">(.*?)</script>', html, re.S).group(1))
    assert data["candidates"][0] == EVIL and data["model"] == "<b>model</b>", "shown through textContent"
    assert data["notice"] == info.extra["notice"] and "alert('notice')" not in html.split("tamx-data")[0]


def test_render_command_writes_pages_index_and_figures(run_path, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["explain", str(run_path), "--quiet"]).exit_code == 0
    out = tmp_path / "html"
    result = runner.invoke(
        main, ["render", str(run_path), "--out", str(out), "--png", "--tokens", "0,2", "--dpi", "72", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert f"open {out / 'index.html'}" in result.output
    for sample_id in ("img", "multi", "video"):
        assert (out / "samples" / f"{sample_id}.html").is_file()
        assert sorted(p.name for p in (out / "figures" / sample_id).iterdir()) == [
            "token_000.png",
            "token_002.png",
            "variants.png",
        ]
    index = (out / "index.html").read_text()
    assert index.count('class="sample-link"') == 3 and "data:image/jpeg;base64," in index
    bad = runner.invoke(main, ["render", str(run_path), "--out", str(out), "--png", "--tokens", "99"])
    assert bad.exit_code == 1 and "--tokens asked for [99]" in bad.output
    assert not list(out.rglob("*.partial"))


def test_page_of_the_target_size_stays_small(tmp_path):
    """391 vision x 128 answer tokens with a 640x480 JPEG, TAM and CAM variants: <= 1.5 MB."""
    from tamx import ExplainSettings, Media, create_run

    yy, xx = np.mgrid[0:480, 0:640]
    photo = np.dstack([(xx / 640 * 255), (yy / 480 * 255), ((xx + yy) % 256)]).astype(np.uint8)
    cv2.circle(photo, (320, 240), 90, (20, 40, 220), -1)
    jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    sample = synthetic_sample("big", grids=[(1, 17, 23)], n_answer=128, n_context=20, hidden_size=256, media=False)
    sample.media = [Media(item=0, kind="image", mime="image/jpeg", data=jpeg)]
    run = create_run(tmp_path / "run", synthetic_run_info())
    run.write_sample(sample)
    for settings in (ExplainSettings(), ExplainSettings(eci="off", filter="none")):
        run.write_maps("big", explain_sample(sample, settings, settings.variant_name()))
    result = CliRunner().invoke(main, ["render", str(tmp_path / "run"), "--out", str(tmp_path / "html"), "--quiet"])
    assert result.exit_code == 0, result.output
    size = (tmp_path / "html" / "samples" / "big.html").stat().st_size
    assert size <= 1.5e6, f"{size / 1e6:.2f} MB"
    assert open_run(tmp_path / "run").variants("big") == ["cam", "tam"]


# ---------------------------------------------------------------- scale, names, turns, probabilities


def test_joint_scale_is_the_raw_range_of_map_and_relevance():
    from tamx.report import joint_scale

    maps = np.array([[0.0, 2.0, 4.0], [0.0, 0.0, 0.0]], np.float32)
    text = np.array([[8.0], [3.0]], np.float32)
    np.testing.assert_array_equal(joint_scale(maps, text), [[0.0, 8.0, 4.0], [0.0, 3.0, 0.0]])


@pytest.mark.parametrize(
    ("model_id", "shown"),
    [
        ("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"),
        ("/tmp/pytest-of-x/models/qwen2-vl", "qwen2-vl"),
        ("./checkpoints/llava", "llava"),
        ("C:\\models\\gemma3", "gemma3"),
        ("synthetic", "synthetic"),
    ],
)
def test_pages_name_a_model_by_hub_id_or_folder_name(model_id, shown):
    from tamx.report import display_name

    assert display_name(model_id) == shown


def multi_turn_sample():
    """A sample whose messages are user, assistant, user: the context tokens split 5 / 3 / 4."""
    sample = synthetic_sample("turns", grids=[(1, 3, 4)], n_context=12, n_answer=6, seed=5)
    strings = [sample.tokens[p] for p in sample.context_positions]
    parts = [strings[:5], strings[5:8], strings[8:]]
    sample.messages = [
        {"role": role, "content": [{"type": "text", "text": "".join(part)}]}
        for role, part in zip(["user", "assistant", "user"], parts)
    ]
    return sample


def test_every_turn_gets_its_role():
    sample = multi_turn_sample()
    data = page_data(sample, {"tam": explain_sample(sample)}, synthetic_run_info())
    prompts = [s for s in data["segments"] if s["kind"] == "prompt"]
    assert [(s["role"], len(s["tokens"])) for s in prompts] == [("user", 5), ("assistant", 3), ("user", 4)]
    sample.messages[0]["content"][0]["text"] += " text the tokens do not have"
    data = page_data(sample, {}, synthetic_run_info())
    assert {s["role"] for s in data["segments"] if s["kind"] == "prompt"} == {"prompt"}, "no guess when they differ"


def test_answer_probabilities_are_stored_and_shown(tmp_path):
    from tamx import create_run

    sample = synthetic_sample("p", grids=[(1, 3, 3)], n_answer=4)
    assert page_data(sample, {}, synthetic_run_info())["answer_probs"] == pytest.approx(
        np.exp(sample.candidate_logprobs[:, 0]), abs=1e-4
    ), "greedy runs without the field: the top candidate is the generated token"
    sample.answer_logprobs = np.log([0.5, 0.25, 0.125, 1.0]).astype(np.float32)
    sample.meta = {"mode": "teacher-forced"}
    run = create_run(tmp_path / "run", synthetic_run_info())
    run.write_sample(sample)
    back = open_run(tmp_path / "run").sample("p")
    np.testing.assert_array_equal(back.answer_logprobs, sample.answer_logprobs)
    data = page_data(back, {}, synthetic_run_info())
    assert data["answer_probs"] == [0.5, 0.25, 0.125, 1.0] and data["mode"] == "teacher-forced"
    from tamx.pipeline.interchange import export_sample

    from tamx.interchange import import_sample

    export_sample(tmp_path / "p.safetensors", back, synthetic_run_info())
    np.testing.assert_array_equal(import_sample(tmp_path / "p.safetensors")[0].answer_logprobs, sample.answer_logprobs)
    sample.answer_logprobs = np.zeros(3, np.float32)
    with pytest.raises(Exception, match="answer_logprobs"):
        sample.validate()


def test_words_align_across_tokenisations():
    from tamx.words import align_word

    a = [" The", " red", " cir", "cle", "."]
    b = [" the", " re", "d", " circle", ".", " red"]
    assert align_word(a, 1, b) == [1, 2] and align_word(a, 2, b) == [3] and align_word(a, 0, b) == [0]
    assert align_word(a, 1, [" blue"]) == [] and align_word(a, 9, b) == []


def test_whitespace_is_made_visible():
    from tamx.tokens import visible_whitespace

    assert visible_whitespace(" a") != visible_whitespace("a") and visible_whitespace(" a\n\t") == "␣a⏎⇥"


def test_records_print_as_one_line():
    sample = synthetic_sample("s", grids=[(1, 3, 4), (2, 2, 2)])
    maps = explain_sample(sample)
    for record in (sample, maps, sample.lm_head, synthetic_run_info(), sample.media[0]):
        text = repr(record)
        assert "\n" not in text and len(text) < 200 and "array" not in text, text
    assert repr(sample).startswith("Sample('s', ") and "image 1x3x4, video 2x2x2" in repr(sample)


# ---------------------------------------------------------------- figures read back


def one_hot_sample(box=None):
    """A 4x4 grid over a 32x32 grey image; answer token 0's map is 1 on cell (1, 2), else 0."""
    from tamx import Maps, Media
    from tamx.records import VisionBlock

    sample = synthetic_sample("hot", grids=[(1, 4, 4)], n_answer=2, n_context=3, media=False)
    sample.vision_blocks = (VisionBlock(**{**sample.vision_blocks[0].to_json(), "grid": (1, 4, 4), "box": box}),)
    grey = cv2.imencode(".png", np.full((32, 32, 3), 128, np.uint8))[1].tobytes()
    sample.media = [Media(item=0, kind="image", mime="image/png", data=grey)]
    tam = np.zeros((2, 16), np.float32)
    tam[0, 1 * 4 + 2] = 1.0
    tam[1, 0] = 1.0
    zeros = np.zeros((2, 3), np.float32)
    maps = Maps(
        "tam", {}, cam=tam, eci=tam, final=tam, text_relevance=zeros, answer_relevance=np.zeros((2, 2), np.float32)
    )
    return sample, maps


@pytest.mark.parametrize(("box", "centre"), [(None, (20, 12)), ((0.0, 0.0, 16.0, 16.0), (10, 6))])
def test_png_figure_puts_the_marker_on_its_source_pixels(tmp_path, box, centre):
    from tamx.figures import FigureStyle, save_figure, token_figure

    sample, maps = one_hot_sample(box)
    figure = token_figure(sample, maps, 0, FigureStyle(alpha=1.0, dpi=100))
    path = tmp_path / "token.png"
    save_figure(figure, path, "png", 100)
    image = cv2.imread(str(path))[..., ::-1]
    ax = figure.axes[0]

    def pixel(x, y):
        px, py = ax.transData.transform((x, y))
        return image[round(float(image.shape[0] - py)), round(float(px))].astype(int)

    hot, cold = pixel(*centre), pixel(centre[0] - (8 if box is None else 4) * 2, centre[1] + (8 if box is None else 4))
    lut = colormap_lut()
    assert np.abs(hot - lut[255]).max() < 40, hot
    assert np.abs(cold - lut[0]).max() < 40, cold
    if box is not None:  # outside the crop: the grey image, shaded
        assert (pixel(28, 28) < 128).all() and np.ptp(pixel(28, 28)) < 10


def test_svg_figure_keeps_text_and_one_image_per_panel(tmp_path):
    from tamx.figures import FigureStyle, save_figure, variants_figure

    sample = synthetic_sample("s", grids=[(1, 4, 5), (1, 3, 3)])
    sample.tokens = list(sample.tokens)
    sample.tokens[sample.answer_positions[1]] = " 猫"
    tam, cam = explain_sample(sample), explain_sample(sample, variant="cam")
    figure = variants_figure(sample, {"tam": tam, "cam": cam}, [0, 1], FigureStyle())
    path = tmp_path / "grid.svg"
    save_figure(figure, path, "svg")
    svg = path.read_text()
    texts = re.findall(r"<text[^>]*>([^<]*)", svg)
    # column titles: the label of the settings (tamx.methods.variant_title); "cam" holds TAM's settings here
    assert "1: ␣猫" in texts and "TAM · image 1" in texts and "cam (TAM) · image 2" in texts
    assert len([a for a in figure.axes if a.images]) == 2 * 4, "2 tokens x (2 variants x 2 images)"
    assert svg.count("<image") >= 8
    save_figure(figure, tmp_path / "grid.pdf", "pdf")
    assert (tmp_path / "grid.pdf").read_bytes()[:5] == b"%PDF-"


def test_png_text_draws_cjk_where_a_cjk_font_is_installed(tmp_path):
    import warnings

    from tamx.figures import font_families, save_figure, token_figure

    if len(font_families()) == 1:
        pytest.skip(CJK_FONT_MISSING)
    sample = synthetic_sample("s", grids=[(1, 3, 3)], n_answer=2)
    sample.tokens = list(sample.tokens)
    sample.tokens[sample.answer_positions[0]] = " 猫が"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns for every glyph no font has
        save_figure(token_figure(sample, explain_sample(sample), 0), tmp_path / "cjk.png", "png", 100)


def test_figure_text_draws_control_characters_as_escapes(tmp_path):
    import warnings

    from tamx.figures import save_figure, token_figure

    sample = synthetic_sample("s", grids=[(1, 3, 3)], n_answer=2)
    sample.tokens = list(sample.tokens)
    sample.tokens[sample.answer_positions[1]] = "a\x0cb\r"  # a form feed and a carriage return in a token
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns for every glyph no font has
        save_figure(token_figure(sample, explain_sample(sample), 1), tmp_path / "ctrl.svg", "svg", 100)
    assert "a\\x0cb\\r" in (tmp_path / "ctrl.svg").read_text()


def test_render_two_runs_pairs_samples_and_draws_tokens_x_runs(tmp_path):
    from tamx import create_run

    for name, seed in (("model-a", 0), ("model-b", 1)):
        run = create_run(tmp_path / name, synthetic_run_info())
        for sample_id in ("shared", name):
            sample = synthetic_sample(sample_id, grids=[(1, 3, 4)], n_answer=5, seed=seed)
            run.write_sample(sample)
            run.write_maps(sample_id, explain_sample(sample))
    out = tmp_path / "html"
    args = ["render", str(tmp_path / "model-a"), str(tmp_path / "model-b"), "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, [*args, "--format", "svg", "--layout", "runs", "--tokens", "0,1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["shared.html"]
    assert "not in every run" in result.output
    html = (out / "samples" / "shared.html").read_text()
    data = json.loads(re.search(r'id="tamx-data">(.*?)</script>', html, re.S).group(1))
    assert [r["run"] for r in data["runs"]] == ["model-a", "model-b"]
    svg = (out / "figures" / "shared" / "runs.svg").read_text()
    assert "model-a" in svg and "model-b" in svg
    # the index row of the shared sample holds each run's answer and map, under its name
    index = (out / "index.html").read_text()
    row = re.search(r'<tr class="entry">(.*?)</tr>', index, re.S).group(1)
    for name, seed in (("model-a", 0), ("model-b", 1)):
        sample = synthetic_sample("shared", grids=[(1, 3, 4)], n_answer=5, seed=seed)
        answer = html_lib.escape("".join(sample.tokens[p] for p in sample.answer_positions).strip(), quote=False)
        assert f'<div class="role">{name}</div>{answer}</div>' in row
        assert f'alt="mean map over the answer of {name}"' in row
    alone = CliRunner().invoke(
        main, ["render", str(tmp_path / "model-a"), "--out", str(out), "--png", "--layout", "runs"]
    )
    assert alone.exit_code == 1 and "two or more" in alone.output


def test_no_page_or_index_carries_a_machine_path(tmp_path):
    from tamx import create_run

    info = synthetic_run_info()
    info.model_id = str(tmp_path / "checkpoints" / "my-model")
    run = create_run(tmp_path / "run", info)
    sample = multi_turn_sample()
    run.write_sample(sample)
    run.write_maps(sample.id, explain_sample(sample))
    report = CliRunner().invoke(main, ["render", str(tmp_path / "run"), "--out", str(tmp_path / "html"), "--quiet"])
    assert report.exit_code == 0, report.output
    for page in (tmp_path / "html").rglob("*.html"):
        text = page.read_text()
        assert str(tmp_path) not in text and str(Path.cwd()) not in text, page
        assert "my-model" in text or page.name == "turns.html"


def test_index_shows_eval_scores_per_sample(tmp_path):
    from tamx import create_run

    run = create_run(tmp_path / "run", synthetic_run_info())
    sample = synthetic_sample("scored", grids=[(1, 3, 4)], n_answer=4)
    run.write_sample(sample)
    run.write_maps("scored", explain_sample(sample))
    (tmp_path / "run" / "eval" / "coco").mkdir(parents=True)
    (tmp_path / "run" / "eval" / "coco" / "entries.csv").write_text(
        "variant,sample,kind,words,category,score,precision,recall,threshold\n"
        "tam,scored,noun,cat,cat,0.5,1,1,\ntam,scored,noun,dog,dog,0.25,1,1,\ntam,scored,function,a,,0.75,,,12\n"
    )
    assert CliRunner().invoke(main, ["render", str(tmp_path / "run"), "--out", str(tmp_path / "html")]).exit_code == 0
    index = (tmp_path / "html" / "index.html").read_text()
    assert "coco/tam" in index and "0.375 · 0.750" in index and 'id="filter"' in index


def test_show_gives_a_notebook_view_of_the_page(tmp_path):
    import tamx
    from tamx import create_run

    run = create_run(tmp_path / "run", synthetic_run_info())
    sample = synthetic_sample("nb", grids=[(1, 3, 4)], n_answer=4)
    run.write_sample(sample)
    run.write_maps("nb", explain_sample(sample))
    run.write_maps("nb", explain_sample(sample, variant="cam"))
    view = tamx.show(tmp_path / "run", "nb", variant="tam")
    frame = view._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts"' in frame
    page = html_lib.unescape(re.search(r'srcdoc="(.*?)"', frame, re.S).group(1))
    assert page == view.html and page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert list(json.loads(re.search(r'id="tamx-data">(.*?)</script>', page, re.S).group(1))["variants"]) == ["tam"]
    both = tamx.show(tmp_path / "run", "nb", variant=["cam", "tam"]).html
    shown = json.loads(re.search(r'id="tamx-data">(.*?)</script>', both, re.S).group(1))["shown_variants"]
    assert shown == ["cam", "tam"]
    with pytest.raises(ValueError, match="no variant nope; stored: cam, tam"):
        tamx.show(tmp_path / "run", "nb", variant="nope")


def test_frames_figure_shows_one_word_across_the_video(tmp_path):
    from tamx.figures import frames_figure, save_figure

    sample = synthetic_sample("v", grids=[(3, 4, 5)], n_answer=4)
    sample.meta = {"video_fps": [2.0]}
    figure = frames_figure(sample, explain_sample(sample), [0, 1])
    save_figure(figure, tmp_path / "frames.svg", "svg")
    texts = re.findall(r"<text[^>]*>([^<]*)", (tmp_path / "frames.svg").read_text())
    assert [t for t in texts if t.startswith("frame")] == ["frame 0 · 0.0 s", "frame 2 · 1.0 s", "frame 4 · 2.0 s"]
    assert len([a for a in figure.axes if a.images]) == 2 * 3
