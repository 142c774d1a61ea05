"""What a researcher sees: the colour scale (map / joint) of pages and figures, and the small
things of the report's pages, index and figures (issue 24)."""

from __future__ import annotations

import dataclasses
import re

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.backends.backend_agg import FigureCanvasAgg
from tamx.pipeline.cli import main

from tamx import ExplainSettings, Maps, Media, create_run, explain_sample, open_run
from tamx.captions import CaptionScores, format_captions
from tamx.figures import FigureStyle, token_figure
from tamx.records import VisionBlock
from tamx.report import normalise, normalise_jointly, page_data, unpack_array
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .test_browser import Page, expected_canvases

NOTICE = "Demo: a toy model."


def _content_word_sample():
    """A 4x4 map over a grey image whose text relevance (the word before) is twice the map's
    peak: on the joint scale (Eq. 3) the map reaches half the bar only."""
    sample = synthetic_sample("word", grids=[(1, 4, 4)], n_answer=3, n_context=3, media=False, seed=6)
    sample.vision_blocks = (VisionBlock(**{**sample.vision_blocks[0].to_json(), "grid": (1, 4, 4), "box": None}),)
    grey = cv2.imencode(".png", np.full((32, 32, 3), 128, np.uint8))[1].tobytes()
    sample.media = [Media(item=0, kind="image", mime="image/png", data=grey)]
    sample.tokens = list(sample.tokens)
    for k, position in enumerate(sample.vision_blocks[0].start - np.arange(1, 4)):
        sample.tokens[position] = ["USER:", " ", "\n"][k]
    tam = np.zeros((3, 16), np.float32)
    tam[0, 1 * 4 + 2] = 2.5
    tam[1, 0] = 1.0
    tam[2, 5] = 0.5
    relevance = np.zeros((3, 3), np.float32)
    relevance[0, 1] = 5.0
    relevance[0, 2] = 1.0
    maps = Maps(
        "tam", {}, cam=tam, eci=tam, final=tam, text_relevance=relevance, answer_relevance=np.zeros((3, 3), np.float32)
    )
    return sample, maps


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of the same samples with the same notice, rendered alone and compared."""
    root = tmp_path_factory.mktemp("scale")
    for name in ("a", "b"):
        info = synthetic_run_info()
        info.extra["notice"] = NOTICE
        run = create_run(root / name, info)
        sample, maps = _content_word_sample()
        run.write_sample(sample)
        run.write_maps("word", maps)
        run.write_maps("word", dataclasses.replace(maps, variant="cam", text_relevance=maps.text_relevance * 0))
        turns = synthetic_sample("turns", grids=[(1, 4, 5)], n_context=6, n_answer=4, seed=5)
        turns.tokens = list(turns.tokens)
        turns.tokens[0] = "USER:"
        strings = [turns.tokens[p] for p in turns.context_positions]
        turns.messages = [{"role": "user", "content": [{"type": "text", "text": "".join(strings)}]}]
        video = synthetic_sample("video", grids=[(3, 4, 5)], seed=2)
        for each in (turns, video):
            run.write_sample(each)
            run.write_maps(each.id, explain_sample(each, ExplainSettings()))
    assert CliRunner().invoke(main, ["render", str(root / "a"), "--out", str(root / "html"), "--quiet"]).exit_code == 0
    result = CliRunner().invoke(main, ["render", str(root / "a"), str(root / "b"), "--out", str(root / "html-ab")])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def browser(chromium):
    return chromium


def _rows(maps: Maps, scale: str) -> tuple[np.ndarray, np.ndarray]:
    relevance = np.concatenate([maps.text_relevance, maps.answer_relevance], axis=1)
    return normalise(maps.final, relevance, scale)


def test_page_data_carries_the_map_on_its_own_range_and_eq3(runs):
    run = open_run(runs / "a")
    sample, maps = run.sample("word"), run.maps("word", "tam")
    view = page_data(sample, {"tam": maps}, run.info)["variants"]["tam"]
    assert unpack_array(view["answer"])[0].max() == 128, "Eq. 3: the text relevance (5.0) tops the map (2.5)"
    assert unpack_array(view["answer_own"])[0].max() == 255, "on its own range the map reaches the top"
    np.testing.assert_array_equal(unpack_array(view["answer_own_scale"])[0], [0.0, 2.5, 2.5])
    np.testing.assert_array_equal(unpack_array(view["answer_text_own_scale"])[0][:2], [0.0, 5.0])
    np.testing.assert_array_equal(unpack_array(view["answer_text_own"]), normalise_jointly(run_relevance(maps))[0])
    with pytest.raises(ValueError, match="unknown scale 'nope': use one of map, joint"):
        page_data(sample, {"tam": maps}, run.info, scale="nope")


def run_relevance(maps: Maps) -> np.ndarray:
    return np.concatenate([maps.text_relevance, maps.answer_relevance], axis=1)


def test_scale_control_recolours_maps_and_text_and_labels_the_bar(runs, browser):
    run = open_run(runs / "a")
    sample, maps = run.sample("word"), run.maps("word", "tam")
    page = Page(browser, runs / "html" / "samples" / "word.html")
    p = page.page
    p.click("[data-answer-index='0']")
    cell = p.locator(".frame canvas").bounding_box()
    target = (cell["x"] + cell["width"] * (2.5 / 4), cell["y"] + cell["height"] * (1.5 / 4))
    seen = {}
    for scale, top, label in (("map", 2.5, "own range"), ("joint", 5.0, "Eq. 3")):
        if scale != "map":
            p.select_option("#scale", scale)
        else:
            assert p.input_value("#scale") == "map", "the page opens on the map's own range"
        assert p.evaluate("() => window.tamx.state.scale") == scale
        got, want = page.canvases(), expected_canvases(sample, _rows(maps, scale)[0][0])
        np.testing.assert_array_equal(got[0], want[0])
        assert label in p.inner_text(".column .bar-mid")
        assert float(p.inner_text(".column .bar-high")) == top
        text = _rows(maps, scale)[1][0]
        tinted = p.evaluate(
            "() => getComputedStyle(document.querySelector('[data-prompt-index=\"1\"]')).backgroundColor"
        )
        alpha = float(re.findall(r"[\d.]+", tinted)[-1])
        assert alpha == pytest.approx(0.15 + 0.7 * text[1] / 255, abs=1e-3), (scale, tinted)
        p.mouse.move(*target)
        seen[scale] = float(re.search(r"raw ([\d.]+)", p.inner_text("#cell")).group(1))
        p.mouse.move(1, 1)
    # hovering reads the same raw value on either scale (one quantisation step of the joint one)
    assert seen["map"] == pytest.approx(2.5, abs=0.01) and seen["joint"] == pytest.approx(2.5, abs=5 / 255)
    assert page.errors == []


def test_render_scale_option_sets_the_pages_first_view_and_is_validated(runs, browser, tmp_path):
    result = CliRunner().invoke(
        main, ["render", str(runs / "a"), "--out", str(tmp_path / "html-joint"), "--scale", "joint"]
    )
    assert result.exit_code == 0, result.output
    page = Page(browser, tmp_path / "html-joint" / "samples" / "word.html")
    assert page.page.evaluate("() => window.tamx.state.scale") == "joint"
    assert page.page.input_value("#scale") == "joint" and "Eq. 3" in page.page.inner_text(".column .bar-mid")
    bad = CliRunner().invoke(main, ["render", str(runs / "a"), "--out", str(tmp_path / "x"), "--scale", "eq3"])
    assert bad.exit_code == 2 and "'eq3' is not one of 'map', 'joint'" in bad.output
    assert not (tmp_path / "x").exists()


def test_text_colours_say_whose_relevance_with_several_variants(runs, browser):
    page = Page(browser, runs / "html" / "samples" / "word.html")
    p = page.page
    p.click("[data-answer-index='0']")
    assert p.inner_text("#text-source") == ""
    p.check("input[name=variant][value=cam]")
    assert p.inner_text("#text-source") == "Text colours: cam's relevance (the first ticked variant)."


def test_two_run_page_prints_the_notice_once(runs, browser):
    page = Page(browser, runs / "html-ab" / "samples" / "word.html")
    assert page.page.inner_text("#notice") == NOTICE
    assert page.page.locator(".conversation").count() == 2


def test_index_thumbnail_says_whose_mean_map_and_which_image(runs, browser):
    page = Page(browser, runs / "html" / "index.html", ready="table")
    captions = page.page.locator("td.map .map-caption").all_inner_texts()
    assert "tam: mean map over the answer, image 1" in captions
    assert "tam: mean map over the answer, the first video slice (1 of 3; its page shows all)" in captions
    compared = Page(browser, runs / "html-ab" / "index.html", ready="table")
    first = compared.page.locator("td.map figure").first
    assert first.locator(".role").text_content() == "a"
    assert first.locator(".map-caption").text_content() == "tam: mean map over the answer, image 1"


def test_video_timeline_numbers_slices_once(runs, browser):
    page = Page(browser, runs / "html" / "samples" / "video.html")
    items = page.page.locator(".timeline li")
    assert items.first.inner_text().startswith("slice 0: frames")
    assert page.page.evaluate("() => getComputedStyle(document.querySelector('.timeline li')).listStyleType") == "none"
    shot = page.page.locator(".timeline").screenshot()
    # no marker: the first dark pixels of the list's first line are the text's, at its left edge
    image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert (image[:, :4] < 200).sum() > 0, "the text starts at the list's left edge, no '1.' before it"


def test_template_tokens_replace_the_role_labels(runs, browser):
    page = Page(browser, runs / "html" / "samples" / "turns.html")
    p = page.page
    assert p.locator(".role.turn-role").first.is_visible() and not p.locator(".segment.template").first.is_visible()
    p.check("#show-template")
    assert p.locator(".segment.template").first.is_visible() and "USER:" in p.inner_text(".conversation")
    assert not p.locator(".role.turn-role").first.is_visible(), "the template names the turn: no second label"
    answer = p.inner_text(".role.answer-role").lower()
    assert "explained answer" in answer and not answer.startswith("assistant")


@pytest.mark.parametrize("width", [800, 1280])
def test_token_heading_is_not_cut(runs, browser, width):
    page = Page(browser, runs / "html-ab" / "samples" / "word.html")
    p = page.page
    p.set_viewport_size({"width": width, "height": 900})
    p.check(".controls input[name=variant][value=cam]")
    p.click(".conversation[data-run='0'] [data-answer-index='0']")
    status = p.locator("#status")
    fits = status.evaluate("e => e.scrollWidth <= e.clientWidth && e.scrollHeight <= e.clientHeight")
    assert fits, status.inner_text()
    assert "answer token 0" in status.inner_text() and "cam | tam" in status.inner_text()


def test_figures_scale_option_labels_the_colour_bars(runs, tmp_path):
    labels = {}
    for scale in ("map", "joint"):
        out = tmp_path / scale
        args = ["render", str(runs / "a"), "--out", str(out), "--samples", "word", "--format", "svg"]
        result = CliRunner().invoke(main, [*args, "--tokens", "0", "--scale", scale, "--quiet"])
        assert result.exit_code == 0, result.output
        labels[scale] = (
            (out / "figures" / "word" / "variants.svg").read_text(),
            (out / "figures" / "word" / "token_000.svg").read_text(),
        )
    grid, token = labels["map"]
    assert ">each map's own range<" in grid and ">(scale: map)<" in grid and ">raw, the map's own range<" in token
    grid, token = labels["joint"]
    assert ">map with text relevance<" in grid and ">(scale: joint, Eq. 3)<" in grid
    assert ">raw, map with text (Eq. 3)<" in token
    assert not any("N(map ⊥ r)" in text for pair in labels.values() for text in pair)


def test_figure_maps_follow_the_scale(runs):
    run = open_run(runs / "a")
    sample, maps = run.sample("word"), run.maps("word", "tam")
    peaks = {}
    for scale in ("map", "joint"):
        figure = token_figure(sample, maps, 0, FigureStyle(dpi=50, scale=scale))
        overlay = [im for ax in figure.subfigs[0].axes for im in ax.get_images()][1]
        peaks[scale] = float(np.max(overlay.get_array()))
    assert peaks == {"map": 1.0, "joint": pytest.approx(128 / 255)}
    with pytest.raises(ValueError, match="unknown scale 'x'"):
        FigureStyle(scale="x")


def test_token_strip_boxes_cover_only_their_own_token(runs):
    run = open_run(runs / "a")
    sample, maps = run.sample("word"), run.maps("word", "tam")
    figure = token_figure(sample, maps, 0, FigureStyle(dpi=200))
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    strip = figure.subfigs[1]
    texts = {t.get_gid()[len("token-") :]: t.get_window_extent(renderer) for t in strip.texts if t.get_gid()}
    boxes = {
        a.get_gid()[len("token-box-") :]: a.get_window_extent(renderer)
        for a in strip.artists
        if (a.get_gid() or "").startswith("token-box-")
    }
    assert len(boxes) >= 3, "two neighbouring context tokens and the current token are highlighted"
    for key, box in boxes.items():
        row = key.split("-")[0]
        for other, extent in texts.items():
            if other == key or other.split("-")[0] != row:
                continue
            overlap = min(box.x1, extent.x1) - max(box.x0, extent.x0)
            assert overlap <= 1.0, f"token {key}'s box covers {overlap:.1f} px of token {other}"


def test_caption_line_says_which_metrics_are_scaled():
    scores = CaptionScores(samples=2, scores={"rouge_l": 0.4512, "meteor": 0.3, "cider": 1.234})
    line = format_captions(scores)
    assert "ROUGE-L and METEOR x 100, CIDEr-D as is" in line
    assert "ROUGE-L 45.12, METEOR 30.00, CIDEr-D 1.23" in line
