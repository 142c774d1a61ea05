"""The live page of `tamx serve` in headless Chromium: settings recompute the maps on the
server, runs switch, variants are saved, figures download, the method and layer a sample
recorded are offered, and no request leaves the server."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tamx.pipeline.serve import ServerThread, make_app

from tamx import ExplainSettings, create_run, explain_sample, open_run
from tamx.report import DEFAULT_SCALE, normalise
from tamx.synthetic import synthetic_run_info, synthetic_sample
from tamx.tokens import token_strings

from .refusals import tamx_output
from .test_browser import EVIL, MAP_CANVASES, expected_canvases, read_canvases
from .test_serve import core_figure


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-browser")
    evil = synthetic_sample("video", grids=[(3, 4, 5)], seed=2)
    evil.meta = {"answer": EVIL[1]}
    for name, samples in {
        "a": [synthetic_sample("img", grids=[(1, 9, 13)]), evil],
        "b": [synthetic_sample("multi", grids=[(1, 6, 8), (1, 4, 5)], seed=1)],
    }.items():
        run = create_run(root / name, synthetic_run_info())
        for sample in samples:
            run.write_sample(sample)
            run.write_maps(sample.id, explain_sample(sample))
    with ServerThread(make_app({"a": root / "a", "b": root / "b"})) as running:
        running.root = root
        yield running


class LivePage:
    """The served page with everything it logged and requested."""

    def __init__(self, browser, url: str, ready: str = "body[data-serve-ready='1']"):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)
        self.page.wait_for_selector(ready)

    def canvases(self, variant: str | None = None) -> list[np.ndarray]:
        """RGBA pixels of every map canvas (of one variant's column), [H, W, 4] each."""
        selector = MAP_CANVASES if variant is None else f"{MAP_CANVASES}[data-variant='{variant}']"
        return read_canvases(self.page, selector)

    def outside(self, server) -> list[str]:
        return [u for u in self.requests if not u.startswith(server.url + "/") and not u.startswith("data:")]

    def pin(self, index: int) -> None:
        """Click an answer token, then take the mouse off the text (hovering selects tokens too)."""
        self.page.click(f"[data-answer-index='{index}']")
        self.page.mouse.move(1, 1)

    def set_setting(self, selector: str, value: str) -> None:
        if selector == "#serve-kernel":
            self.page.fill(selector, value)
            self.page.press(selector, "Enter")  # commits the value: one change event, as a user's Enter
        else:
            self.page.select_option(selector, value)


def answer_row(maps, index: int) -> np.ndarray:
    relevance = np.concatenate([maps.text_relevance, maps.answer_relevance], axis=1)
    return normalise(maps.tam, relevance, DEFAULT_SCALE)[0][index]  # the scale a page opens with


def assert_painted(page: LivePage, sample, row: np.ndarray, variant: str | None = None) -> None:
    got, want = page.canvases(variant), expected_canvases(sample, row)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_settings_recompute_the_map_and_runs_switch(server, chromium):
    page = LivePage(chromium, server.url + "/?run=a&sample=img")
    sample = open_run(server.root / "a").sample("img")
    page.pin(3)
    page.set_setting("#serve-kernel", "5")
    page.page.wait_for_selector("body[data-live='relevance/rank-gaussian/5'][data-painted='answer:3:-1:live']")
    assert_painted(page, sample, answer_row(explain_sample(sample, ExplainSettings(kernel_size=5)), 3))
    page.set_setting("#serve-eci", "off")
    page.page.wait_for_selector("body[data-live='off/rank-gaussian/5']")
    assert_painted(page, sample, answer_row(explain_sample(sample, ExplainSettings(eci="off", kernel_size=5)), 3))
    assert page.page.evaluate("window.tamx.state.variants") == ["live"]
    assert page.page.is_checked("input[name=variant][value=live]")
    assert not page.page.is_checked("input[name=variant][value=tam]")
    # the stored variant is one tick away: side by side with the live one, on the same token
    page.page.check("input[name=variant][value=tam]")
    page.page.wait_for_selector("body[data-painted='answer:3:-1:live+tam']")
    assert page.page.locator("#media .column").count() == 2
    live = answer_row(explain_sample(sample, ExplainSettings(eci="off", kernel_size=5)), 3)
    assert_painted(page, sample, live, "live")
    assert_painted(page, sample, answer_row(open_run(server.root / "a").maps("img", "tam"), 3), "tam")
    # a new setting repaints the live column and keeps the stored one beside it
    page.set_setting("#serve-kernel", "1")
    page.page.wait_for_selector("body[data-live='off/rank-gaussian/1']")
    assert page.page.evaluate("window.tamx.state.variants") == ["live", "tam"]
    assert_painted(
        page, sample, answer_row(explain_sample(sample, ExplainSettings(eci="off", kernel_size=1)), 3), "live"
    )
    assert_painted(page, sample, answer_row(open_run(server.root / "a").maps("img", "tam"), 3), "tam")
    page.page.uncheck("input[name=variant][value=live]")
    page.page.wait_for_selector("body[data-painted='answer:3:-1:tam']")
    # another run: its first sample, the token kept
    page.page.select_option("#serve-run", "b")
    page.page.wait_for_selector("body[data-serve-sample='b/multi'][data-painted='answer:3:-1:tam']")
    multi = open_run(server.root / "b")
    assert page.page.evaluate("window.tamx.state.sample") == "multi"
    assert_painted(page, multi.sample("multi"), answer_row(multi.maps("multi", "tam"), 3))
    assert page.page.url.endswith("/?run=b&sample=multi")
    page.page.select_option("#serve-run", "a")
    page.page.wait_for_selector("body[data-serve-sample='a/img']")
    assert EVIL[1] in page.page.locator("#serve-sample option").all_inner_texts()[1]  # shown literally
    assert page.dialogs == [] and page.page.locator("img[src=x]").count() == 0
    assert page.errors == [] and page.outside(server) == []


def test_live_maps_follow_to_the_next_sample(server, chromium):
    page = LivePage(chromium, server.url + "/?run=a&sample=img")
    page.pin(2)
    page.set_setting("#serve-kernel", "5")
    page.page.wait_for_selector("body[data-live='relevance/rank-gaussian/5']")
    page.page.check("input[name=variant][value=tam]")
    page.page.select_option("#serve-sample", "video")
    page.page.wait_for_selector("body[data-serve-sample='a/video'][data-painted='answer:2:-1:live+tam']")
    run = open_run(server.root / "a")
    video = run.sample("video")
    assert_painted(page, video, answer_row(explain_sample(video, ExplainSettings(kernel_size=5)), 2), "live")
    assert_painted(page, video, answer_row(run.maps("video", "tam"), 2), "tam")
    assert page.errors == [] and page.outside(server) == []


def test_a_setting_saved_from_the_page_is_stored(server, chromium):
    page = LivePage(chromium, server.url + "/?run=a&sample=video")
    page.set_setting("#serve-filter", "median")
    page.page.wait_for_selector("body[data-live='relevance/median/3']")
    page.page.fill("#serve-variant-name", "median3")
    page.page.click("#serve-save")
    page.page.wait_for_selector("input[name=variant][value=median3]")
    assert "saved variant median3" in page.page.inner_text("#serve-status")
    run = open_run(server.root / "a")
    assert run.variants("video") == ["median3", "tam"] and run.variants("img") == ["tam"]
    assert run.maps("video", "median3").settings == ExplainSettings(filter="median").to_json()
    assert page.errors == [] and page.outside(server) == []


def test_the_figure_downloads_for_the_shown_token(server, chromium, tmp_path):
    page = LivePage(chromium, server.url + "/?run=a&sample=img")
    page.pin(6)
    with page.page.expect_download() as download:
        page.page.click("#serve-figure")
    assert download.value.suggested_filename == "img-tam-token006.png"
    path = tmp_path / "figure.png"
    download.value.save_as(path)
    run = open_run(server.root / "a")
    sample = run.sample("img")
    np.testing.assert_array_equal(cv2.imread(str(path)), core_figure(sample, run.maps("img", "tam"), 6))
    # live maps beside the stored ones: the figure is the first column's, the live one
    page.set_setting("#serve-kernel", "5")
    page.page.wait_for_selector("body[data-live='relevance/rank-gaussian/5']")
    page.page.check("input[name=variant][value=tam]")
    with page.page.expect_download() as download:
        page.page.click("#serve-figure")
    k5 = ExplainSettings(kernel_size=5)
    assert download.value.suggested_filename == f"img-{k5.variant_name()}-token006.png"
    download.value.save_as(path)
    np.testing.assert_array_equal(cv2.imread(str(path)), core_figure(sample, explain_sample(sample, k5), 6))
    assert page.errors == []


def test_compare_shows_two_live_pages_side_by_side(server, chromium):
    page = LivePage(chromium, server.url + "/compare?left=a/img&right=b/multi", ready="iframe#right")
    for side, expected in (("left", "a/img"), ("right", "b/multi")):
        frame = page.page.frame_locator(f"iframe#{side}")
        frame.locator(f"body[data-serve-ready='1'][data-serve-sample='{expected}']").wait_for()
    assert page.errors == [] and page.outside(server) == []


def test_the_compare_link_pairs_the_sample_with_another_run(server, chromium):
    page = LivePage(chromium, server.url + "/?run=a&sample=img")
    page.page.click("#serve-compare")
    page.page.wait_for_selector("iframe#right")
    assert page.page.url.endswith("/compare?left=a%2Fimg&right=b")  # b has no "img": its first sample
    right = page.page.frame_locator("iframe#right")
    right.locator("body[data-serve-ready='1'][data-serve-sample='b/multi']").wait_for()
    assert page.errors == [] and page.outside(server) == []


def test_the_heading_and_tab_title_name_the_sample_picked(server, chromium):
    page = LivePage(chromium, server.url + "/")
    heading = "header .title strong"
    assert page.page.inner_text(heading) == "img" and page.page.title().startswith("img · a")
    page.page.select_option("#serve-sample", "video")
    page.page.wait_for_selector("body[data-serve-sample='a/video']")
    assert page.page.inner_text(heading) == "video"
    assert page.page.title() == "video · a · tamx serve"
    page.page.select_option("#serve-run", "b")
    page.page.wait_for_selector("body[data-serve-sample='b/multi']")
    assert page.page.inner_text(heading) == "multi" and page.page.title() == "multi · b · tamx serve"
    assert page.errors == [] and page.outside(server) == []


def test_the_back_link_opens_the_list_of_runs_and_samples(server, chromium):
    page = LivePage(chromium, server.url + "/?run=b&sample=multi")
    assert page.page.inner_text("#to-index") == "← runs and samples"
    page.page.click("#to-index")
    page.page.wait_for_url(server.url + "/samples")
    rows = page.page.locator("tr.entry")
    assert rows.count() == 3  # every sample of both runs
    assert page.page.locator(".entry-run").all_text_contents() == ["run a", "run a", "run b"]
    assert page.page.locator(".sample-link").all_inner_texts() == ["img", "video", "multi"]
    assert all(
        src.startswith("data:image/jpeg")
        for src in page.page.locator("td.map img").evaluate_all("images => images.map((i) => i.src)")
    )
    assert page.page.locator("td.map img").count() == 3 and page.page.locator(".images img").count() >= 3
    for k, (name, sample_id) in enumerate([("a", "img"), ("a", "video"), ("b", "multi")]):
        sample = open_run(server.root / name).sample(sample_id)
        answer = "".join(token_strings(sample)[p] for p in sample.answer_positions.tolist()).strip()
        assert rows.nth(k).locator("td.text").nth(1).inner_text() == answer  # the model's answer
    assert page.page.locator("img[src=x]").count() == 0 and page.dialogs == []
    page.page.fill("#filter", "multi")
    assert [rows.nth(k).is_visible() for k in range(3)] == [False, False, True]
    page.page.click("tr.entry:nth-child(3) .sample-link")
    page.page.wait_for_selector("body[data-serve-ready='1'][data-serve-sample='b/multi']")
    assert page.page.inner_text("header .title strong") == "multi"
    assert page.errors == [] and page.outside(server) == []


def test_the_settings_are_explained(server, chromium):
    page = LivePage(chromium, server.url + "/")
    help_text = page.page.inner_text("#serve-help")
    assert all(word in help_text for word in ("ECI", "Eq. 4", "filter", "window", "not stored"))
    for control in ("#serve-eci", "#serve-filter", "#serve-kernel"):
        title = page.page.locator(f"label:has({control})").get_attribute("title")
        assert title and title in help_text
    # samples that recorded nothing but the last layer: no method or layer to choose, none explained
    assert page.page.is_hidden("#serve-method") and page.page.is_hidden("#serve-layer")
    assert "Map method" not in help_text
    assert page.errors == []


def test_a_refused_kernel_marks_the_live_maps_stale(server, chromium):
    page = LivePage(chromium, server.url + "/?run=a&sample=img")
    sample = open_run(server.root / "a").sample("img")
    page.pin(4)
    page.set_setting("#serve-kernel", "5")
    page.page.wait_for_selector("body[data-live='relevance/rank-gaussian/5'][data-painted='answer:4:-1:live']")
    assert page.page.locator(".column.stale").count() == 0
    page.set_setting("#serve-kernel", "99")  # wider than the 9x13 grid: the server refuses it
    page.page.wait_for_selector("body[data-live-stale='relevance/rank-gaussian/99']")
    status = page.page.inner_text("#serve-status")
    assert "--kernel-size 99" in status and "still for relevance/rank-gaussian/5" in status
    assert page.page.locator("#serve-status.error").count() == 1
    column = page.page.locator(".column[data-variant='live']")
    assert "stale" in column.get_attribute("class")
    assert column.locator(".stale-note").inner_text() == (
        "stale: computed for relevance/rank-gaussian/5; relevance/rank-gaussian/99 was refused"
    )
    # the maps on screen are the k=5 ones, marked, not silently passed off as k=99
    assert_painted(page, sample, answer_row(explain_sample(sample, ExplainSettings(kernel_size=5)), 4), "live")
    page.set_setting("#serve-kernel", "3")
    page.page.wait_for_selector("body[data-live='relevance/rank-gaussian/3']:not([data-live-stale])")
    assert page.page.locator(".column.stale, .stale-note").count() == 0
    assert page.outside(server) == []


def _explained_and_served(run, server):
    """Run `run` through `tamx explain --layer -2`, `--method attention` and `--method gradient`,
    and serve it as "rec" beside run "b" of `server` (its samples recorded the last layer only)."""
    for args in (["--layer", "-2"], ["--method", "attention"], ["--method", "gradient"]):
        tamx_output("explain", run, "--quiet", *args)
    running = ServerThread(make_app({"rec": run, "b": server.root / "b"}))
    running.run, running.plain = run, server.root / "b"
    return running


@pytest.fixture(scope="module")
def synthetic_recorded(tmp_path_factory, server):
    """A sample with the fields `tamx encode --layers / --attention / --gradients` records
    (tamx.synthetic's baselines: layers -2 and -4, attention, rollout, Grad-CAM at layer -2),
    written through the store API: no model, no torch."""
    run = tmp_path_factory.mktemp("serve-synthetic-recorded") / "run"
    create_run(run, synthetic_run_info(dtype="bfloat16")).write_sample(
        synthetic_sample("scene", grids=[(1, 6, 8)], dtype="bfloat16", seed=3, baselines=True)
    )
    with _explained_and_served(run, server) as running:
        yield running


@pytest.fixture(scope="module")
def encoded_recorded(tmp_path_factory, server):
    """A run the bundled toy model encoded with `--layers -1,-2 --attention all --gradients -2`."""
    pytest.importorskip("transformers")
    from tamx.pipeline.demo import MODEL_DIR

    if not (MODEL_DIR / "config.json").is_file():
        pytest.skip("the bundled demo model is not built")
    from tamx.shapes import scenes

    root = tmp_path_factory.mktemp("serve-encoded-recorded")
    image = root / "scene.png"
    cv2.imwrite(str(image), scenes(3, 1)[0].image[..., ::-1])
    tamx_output("encode", "--model", "tamx-demo", "--image", image, "--prompt", "Describe the image.",
                "--layers", "-1,-2", "--attention", "all", "--gradients", "-2", "--device", "cpu",
                "--out", root / "run", "--quiet")  # fmt: skip
    with _explained_and_served(root / "run", server) as running:
        yield running


# the toy model's encode imports torch and transformers (~10 s): slow; the synthetic run is not
@pytest.mark.parametrize("recorded", ["synthetic_recorded", pytest.param("encoded_recorded", marks=pytest.mark.slow)])
def test_the_method_and_layer_a_sample_recorded_are_drawn_as_explain_stores_them(recorded, chromium, request):
    """Picking a layer, then a method, recomputes the live maps as `tamx explain --layer` /
    `--method` stores them (the same pixels, bit for bit), headed by their label; the filter
    becomes the method's default and ECI, which it ignores, is disabled; a save stores the
    method as explain would; an ordinary sample next shows no selectors and gets TAM."""
    recorded = request.getfixturevalue(recorded)
    page = LivePage(chromium, recorded.url + "/?run=rec&sample=scene")
    run = open_run(recorded.run)
    sample = run.sample("scene")
    assert run.variants("scene") == ["attention", "gradient_l-2", "tam_l-2"]  # what the page is checked against
    methods = page.page.locator("#serve-method option")
    assert methods.all_inner_texts() == ["TAM", "attention (head mean)", "rollout", "Grad-CAM"]
    layers = [f"{layer}" for layer in sample.lens_layers]
    assert page.page.locator("#serve-layer option").all_inner_texts() == ["-1 (last)", *layers]
    assert "Map method" in page.page.inner_text("#serve-help")
    page.pin(1)
    live = "[data-painted='answer:1:-1:live']"

    page.set_setting("#serve-layer", "-2")
    page.page.wait_for_selector(f"body[data-live='relevance/rank-gaussian/3/tam/-2']{live}")
    assert_painted(page, sample, answer_row(run.maps("scene", "tam_l-2"), 1), "live")
    assert page.page.inner_text(".column[data-variant='live'] h2") == "live: TAM, layer -2"
    assert page.page.get_attribute("body", "data-live-label") == "TAM, layer -2"
    assert page.page.get_attribute("#serve-variant-name", "placeholder") == "tam_l-2"

    page.set_setting("#serve-method", "attention")
    page.page.wait_for_selector(f"body[data-live='none/3/attention']{live}")
    assert_painted(page, sample, answer_row(run.maps("scene", "attention"), 1), "live")
    assert page.page.inner_text(".column[data-variant='live'] h2") == "live: attention (head mean)"
    assert page.page.input_value("#serve-filter") == "none" and page.page.is_disabled("#serve-eci")
    assert page.page.is_hidden("#serve-layer")  # averaged over the recorded layers: no layer to pick

    page.set_setting("#serve-method", "gradient")
    page.page.wait_for_selector(f"body[data-live='none/3/gradient/-2']{live}")
    assert_painted(page, sample, answer_row(run.maps("scene", "gradient_l-2"), 1), "live")
    assert page.page.inner_text(".column[data-variant='live'] h2") == "live: Grad-CAM, layer -2"
    assert page.page.input_value("#serve-layer") == "-2" and page.page.is_disabled("#serve-layer")
    # beside the stored variant: the same pixels, its own heading
    page.page.check("input[name=variant][value='gradient_l-2']")
    page.page.wait_for_selector("body[data-painted='answer:1:-1:live+gradient_l-2']")
    for variant in ("live", "gradient_l-2"):
        assert_painted(page, sample, answer_row(run.maps("scene", "gradient_l-2"), 1), variant)
    assert page.page.inner_text(".column[data-variant='gradient_l-2'] h2") == "Grad-CAM, layer -2"

    page.page.uncheck("input[name=variant][value='gradient_l-2']")
    # saved without a name: stored as `tamx explain --method rollout` stores it
    page.set_setting("#serve-method", "rollout")
    page.page.wait_for_selector(f"body[data-live='none/3/rollout']{live}")
    page.page.click("#serve-save")
    page.page.wait_for_selector("input[name=variant][value=rollout]")
    rollout = ExplainSettings(method="rollout", filter="none")
    assert open_run(recorded.run).maps_settings("scene", "rollout") == rollout.to_json()
    assert_painted(page, sample, answer_row(open_run(recorded.run).maps("scene", "rollout"), 1), "live")
    page.set_setting("#serve-method", "tam")
    page.page.wait_for_selector(f"body[data-live='relevance/rank-gaussian/3']{live}")
    assert page.page.input_value("#serve-filter") == "rank-gaussian" and page.page.is_enabled("#serve-eci")
    assert page.page.inner_text(".column[data-variant='live'] h2") == "live: TAM"

    # an ordinary sample: no selectors; the live maps follow as TAM at the last layer
    page.set_setting("#serve-method", "attention")
    page.page.wait_for_selector("body[data-live='none/3/attention']")
    page.page.select_option("#serve-run", "b")
    page.page.wait_for_selector(f"body[data-serve-sample='b/multi'][data-live='relevance/rank-gaussian/3']{live}")
    assert page.page.is_hidden("#serve-method") and page.page.is_hidden("#serve-layer")
    multi = open_run(recorded.plain).sample("multi")
    assert_painted(page, multi, answer_row(explain_sample(multi), 1), "live")
    assert page.errors == [] and page.outside(recorded) == []
