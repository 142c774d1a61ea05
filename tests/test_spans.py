"""Phrase and sentence maps (issue 24, major 3): one map for a span of answer tokens, the same in
Python (`Maps.span`), in `tamx render --tokens 3-5` figures and on the page (shift-click, drag)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main

from tamx import Maps, create_run, open_run
from tamx.errors import TamxError
from tamx.report import normalise_jointly
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .test_browser import Page, expected_canvases


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One image sample of six answer tokens (" a red double bus.", "double" in two), explained and rendered."""
    root = tmp_path_factory.mktemp("spans")
    made = create_run(root / "run", synthetic_run_info())
    sample = synthetic_sample("img", grids=[(1, 6, 8)], n_answer=6, n_context=4, seed=3)
    sample.tokens = list(sample.tokens)
    for position, text in zip(sample.answer_positions, [" a", " red", " dou", "ble", " bus", "."]):
        sample.tokens[position] = text  # "double" is two tokens, one word
    made.write_sample(sample)
    runner = CliRunner()
    assert runner.invoke(main, ["explain", str(root / "run"), "--quiet"]).exit_code == 0
    result = runner.invoke(main, ["render", str(root / "run"), "--out", str(root / "html"), "--quiet"])
    assert result.exit_code == 0, result.output
    return root


def _hand_maps(final: np.ndarray) -> Maps:
    n = len(final)
    zeros = np.zeros((n, 1), np.float32)
    return Maps("tam", {}, cam=final, eci=final, final=final, text_relevance=zeros)


def test_maps_span_is_the_mean_or_the_activation_weighted_mean(run):
    maps = open_run(run / "run").maps("img", "tam")
    np.testing.assert_allclose(maps.span(1, 4), maps.final[1:4].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(maps.span(0, 6), maps.final.mean(axis=0), rtol=1e-6, err_msg="the whole answer")
    # weighted: token 0 points at nothing (w = 0), token 1 has total activation 1, token 2 has 3
    final = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 2, 1, -1]], np.float32)
    hand = _hand_maps(final)
    np.testing.assert_allclose(hand.span(0, 3, rule="weighted"), (1 * final[1] + 3 * final[2]) / 4)
    np.testing.assert_allclose(hand.span(0, 3), final.mean(axis=0))
    np.testing.assert_allclose(hand.span(0, 1, rule="weighted"), final[0], err_msg="no activation: the mean")
    with pytest.raises(TamxError, match="unknown span rule 'max': use one of mean, weighted"):
        hand.span(0, 2, rule="max")
    with pytest.raises(TamxError, match=r"span 2..4 is not within the answer tokens 0..2"):
        hand.span(2, 5)


def test_render_tokens_range_draws_a_span_as_one_panel_labelled_with_its_phrase(run, tmp_path):
    out = tmp_path / "figs"
    args = ["render", str(run / "run"), "--out", str(out), "--format", "svg", "--tokens", "0,1-3", "--quiet"]
    result = CliRunner().invoke(main, [*args, "--span-rule", "weighted"])
    assert result.exit_code == 0, result.output
    folder = out / "figures" / "img"
    assert sorted(p.name for p in folder.iterdir()) == ["span_001-003.svg", "token_000.svg", "variants.svg"]
    sample = open_run(run / "run").sample("img")
    phrase = " ".join("".join(sample.tokens[p] for p in sample.answer_positions[1:4]).split())
    grid = re.findall(r"<text[^>]*>([^<]*)", (folder / "variants.svg").read_text())
    assert f"1–3: “{phrase}”" in grid and "0: " + sample.tokens[sample.answer_positions[0]].replace(" ", "␣") in grid
    span = (folder / "span_001-003.svg").read_text()
    assert f"1–3: “{phrase}”" in re.findall(r"<text[^>]*>([^<]*)", span) and "TAM · weighted" in span
    assert span.count("<image") == 2, "one panel: the image under its one map"


def test_span_figure_paints_the_python_span_map(run, tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from tamx.figures import FigureStyle, span_figure

    r = open_run(run / "run")
    sample, maps = r.sample("img"), r.maps("img", "tam")
    figure = span_figure(sample, maps, 2, 5, FigureStyle(dpi=72))
    FigureCanvasAgg(figure)
    overlays = [im.get_array() for ax in figure.axes for im in ax.images if im.get_array().ndim == 2]
    assert len(overlays) == 1, "one panel"
    want = normalise_jointly(maps.span(2, 5)[None])[0][0].reshape(6, 8)
    np.testing.assert_array_equal(np.rint(np.asarray(overlays[0]) * 255).astype(np.uint8), want)
    bar = next(ax for ax in figure.axes if ax.get_ylabel() == "raw, the span's own range")
    np.testing.assert_allclose(bar.get_ylim(), (maps.span(2, 5).min(), maps.span(2, 5).max()), rtol=1e-6)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("3-1", "range '3-1' ends before it starts"),
        ("1-", "'1-' is not a token range: write FIRST-LAST"),
        ("a-2", "'a-2' is not a token range"),
        ("1-2-3", "'1-2-3' is not a token range"),
        ("x", "'x' is not an integer or a range like 3-5"),
    ],
)
def test_render_tokens_refuses_bad_ranges_on_one_line(run, tmp_path, tokens, message):
    result = CliRunner().invoke(
        main, ["render", str(run / "run"), "--out", str(tmp_path / "x"), "--png", "--tokens", tokens]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1
    assert not (tmp_path / "x").exists()


def test_render_tokens_range_past_the_answer_says_which(run, tmp_path):
    result = CliRunner().invoke(
        main, ["render", str(run / "run"), "--out", str(tmp_path / "x"), "--png", "--tokens", "4-9"]
    )
    assert result.exit_code == 1 and "has answer tokens 0..5; --tokens asked for [4-9]" in result.output


@pytest.fixture(scope="module")
def browser(chromium):
    return chromium


def _tolerance(maps: Maps, start: int, stop: int) -> float:
    """The page works from 8-bit maps: each token off by up to half a step of its own range."""
    rows = maps.final[start:stop]
    return float((rows.max(axis=1) - rows.min(axis=1)).max()) / 510 * 2 + 1e-6


def test_page_shift_click_shows_the_span_map_python_computes(run, browser):
    r = open_run(run / "run")
    sample, maps = r.sample("img"), r.maps("img", "tam")
    page = Page(browser, run / "html" / "samples" / "img.html")
    p = page.page
    p.click("[data-answer-index='1']")
    p.click("[data-answer-index='3']", modifiers=["Shift"])
    p.mouse.move(1, 1)
    state = p.evaluate("() => window.tamx.state")
    assert (state["kind"], state["index"], state["stop"], state["spanRule"]) == ("span", 1, 4, "mean")
    for rule in ("mean", "weighted"):
        if rule == "weighted":
            p.select_option("#span-rule", "weighted")
        on_page = np.array(p.evaluate(f"() => window.tamx.spanMap('tam', 1, 4, '{rule}')"))
        python = maps.span(1, 4, rule=rule)
        np.testing.assert_allclose(on_page, python, atol=_tolerance(maps, 1, 4), rtol=0)
        # the canvas shows the page's aggregate on its own range, and the bar gives its raw range
        expected = expected_canvases(sample, normalise_jointly(on_page[None])[0][0])
        np.testing.assert_array_equal(page.canvases()[0], expected[0])
        assert float(p.inner_text(".column .bar-high")) == pytest.approx(python.max(), rel=0.02)
        assert f"the span's map ({rule})" in p.inner_text(".column .bar-mid")
        assert "answer tokens 1–3" in p.inner_text("#status")
    assert p.locator("[data-answer-index].pinned").count() == 3
    assert page.errors == []


def test_page_drag_over_tokens_pins_a_span(run, browser):
    page = Page(browser, run / "html" / "samples" / "img.html")
    p = page.page
    a = p.locator("[data-answer-index='4']").bounding_box()
    b = p.locator("[data-answer-index='2']").bounding_box()
    p.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    p.mouse.down()
    p.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=4)
    p.mouse.up()
    p.mouse.move(1, 1)
    state = p.evaluate("() => window.tamx.state")
    assert (state["kind"], state["index"], state["stop"]) == ("span", 2, 5)
    p.keyboard.press("Escape")
    assert p.evaluate("() => window.tamx.state.kind") == "answer" and page.errors == []


def test_render_runs_layout_takes_single_tokens_only(run, tmp_path):
    path = str(run / "run")
    args = ["render", path, path, "--out", str(tmp_path / "x"), "--png", "--layout", "runs", "--tokens", "1-2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "--layout runs aligns single words across runs" in result.output


def test_page_span_with_grouped_words_covers_whole_words(run, browser):
    page = Page(browser, run / "html" / "samples" / "img.html")
    p = page.page
    p.click("[data-answer-index='1']")
    p.click("[data-answer-index='2']", modifiers=["Shift"])
    assert (p.evaluate("() => window.tamx.state.stop")) == 3, "ungrouped: tokens 1-2, ' red dou'"
    p.check("#group-words")
    p.click("[data-answer-index='1']")
    p.click("[data-answer-index='2']", modifiers=["Shift"])
    state = p.evaluate("() => window.tamx.state")
    assert (state["kind"], state["index"], state["stop"]) == ("span", 1, 4), "grouped: the whole word 'double'"
    assert "answer tokens 1–3 “␣red␣double”" in p.inner_text("#status")
