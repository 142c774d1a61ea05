"""The HTML report in headless Chromium (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from tamx.pipeline.render import render_run

from tamx import ExplainSettings, create_run, explain_sample, open_run
from tamx.report import DEFAULT_SCALE, colormap_lut, normalise, normalise_jointly
from tamx.synthetic import synthetic_run_info, synthetic_sample

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
EVIL = ["</script><script>alert(1)</script>", "<img src=x onerror=alert(1)>", "\"double\" and 'single'"]

playwright_api = (
    pytest.importorskip("playwright.sync_api", reason="pip install playwright") if not os.environ.get("CI") else None
)
if playwright_api is None:
    import playwright.sync_api as playwright_api  # in CI the browser tests must run, never skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A rendered report: two images (with sub-word tokens), a video, and a hostile sample."""
    root = tmp_path_factory.mktemp("report")
    run = create_run(root / "run", synthetic_run_info())
    multi = synthetic_sample("multi", grids=[(1, 6, 8), (1, 4, 5)], seed=1)
    multi.tokens = list(multi.tokens)
    for k in (3, 4):  # answer tokens 3 and 4 continue the word of token 2
        multi.tokens[multi.answer_positions[k]] = f"x{k}"
    evil = synthetic_sample("evil", grids=[(1, 3, 4)], n_context=3, n_answer=3, seed=3)
    evil.tokens = list(evil.tokens)
    for k in range(3):
        evil.tokens[evil.context_positions[k]] = EVIL[k]
        evil.tokens[evil.answer_positions[k]] = EVIL[k]
    evil.candidate_tokens = [EVIL for _ in range(3)]
    for sample in (multi, synthetic_sample("video", grids=[(3, 4, 5)], seed=2), evil):
        run.write_sample(sample)
        for settings in (ExplainSettings(), ExplainSettings(eci="off", filter="none")):
            run.write_maps(sample.id, explain_sample(sample, settings))
    render_run(root / "run", root / "html")
    return root


@pytest.fixture(scope="module")
def browser(chromium):
    return chromium  # Debian's chromium, launched once per module (tests/conftest.py)


MAP_CANVASES = "#media .frame canvas"


def read_canvases(target, selector: str = MAP_CANVASES) -> list[np.ndarray]:
    """RGBA pixels [H, W, 4] of the canvases matching `selector` in a Playwright page or frame."""
    raw = target.evaluate(
        """(selector) => [...document.querySelectorAll(selector)].map(c =>
             [c.height, c.width, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)])""",
        selector,
    )
    return [np.array(pixels, dtype=np.uint8).reshape(h, w, 4) for h, w, pixels in raw]


class Page:
    """One opened report page with everything it logged and requested."""

    def __init__(self, browser, path: Path, ready: str = "body[data-ready='1']"):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.url = path.resolve().as_uri()
        self.root = next(p for p in path.resolve().parents if p.name.startswith("html")).as_uri() + "/"
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(self.url)
        self.page.wait_for_selector(ready)

    def canvases(self, selector: str = MAP_CANVASES) -> list[np.ndarray]:
        """RGBA pixels of every overlay canvas, [H, W, 4] each."""
        return read_canvases(self.page, selector)

    def outside_requests(self) -> list[str]:
        """Requests other than the report's own files and inline data: there must be none."""
        return [u for u in self.requests if not u.startswith(self.root) and not u.startswith("data:")]


def expected_canvases(sample, row: np.ndarray) -> list[np.ndarray]:
    """What the page must paint for a uint8 map row [V]: JET colours, opaque, one canvas per slice."""
    lut = colormap_lut()
    out, offset = [], 0
    for block in sample.vision_blocks:
        t, h, w = block.grid
        for s in range(t):
            cells = row[offset + s * h * w : offset + (s + 1) * h * w].reshape(h, w)
            frames = max(1, len(block.frames[s]) if block.frames else 1) if block.kind == "video" else 1
            rgba = np.concatenate([lut[cells], np.full((h, w, 1), 255, np.uint8)], axis=2)
            out.extend([rgba] * frames)
        offset += block.size
    return out


def answer_row(run, sample_id: str, variant: str, index: int) -> np.ndarray:
    maps = run.maps(sample_id, variant)
    relevance = np.concatenate([maps.text_relevance, maps.answer_relevance], axis=1)
    return normalise(maps.final, relevance, DEFAULT_SCALE)[0][index]  # the scale a page opens with


def assert_painted(page: Page, sample, row: np.ndarray) -> None:
    got, want = page.canvases(), expected_canvases(sample, row)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("sample_id", ["multi", "video", "evil"])
def test_pages_load_without_errors_or_network(report, browser, sample_id):
    page = Page(browser, report / "html" / "samples" / f"{sample_id}.html")
    page.page.click("[data-answer-index='1']")
    assert page.errors == [] and page.outside_requests() == [] and page.dialogs == []


def test_clicking_a_token_paints_its_map(report, browser):
    run = open_run(report / "run")
    sample = run.sample("multi")
    page = Page(browser, report / "html" / "samples" / "multi.html")
    for index in (0, 7, 19):
        page.page.click(f"[data-answer-index='{index}']")
        assert_painted(page, sample, answer_row(run, "multi", "tam", index))
    assert page.page.get_attribute("body", "data-painted") == "answer:19:-1:tam"
    assert page.page.locator(".tok.answer.later").count() == 0 and "current" in page.page.get_attribute(
        "[data-answer-index='19']", "class"
    )


def test_arrow_keys_step_through_tokens(report, browser):
    page = Page(browser, report / "html" / "samples" / "multi.html")
    page.page.click("[data-answer-index='5']")
    page.page.keyboard.press("ArrowRight")
    page.page.keyboard.press("ArrowRight")
    page.page.keyboard.press("ArrowLeft")
    assert page.page.get_attribute("body", "data-painted") == "answer:6:-1:tam"
    assert page.page.locator(".tok.answer.later").count() == 20 - 7


def test_clicking_a_candidate_paints_its_map(report, browser):
    run = open_run(report / "run")
    sample = run.sample("multi")
    page = Page(browser, report / "html" / "samples" / "multi.html")
    page.page.click("[data-answer-index='4']")
    buttons = page.page.locator("#candidates [data-candidate-index]")
    assert buttons.count() == 3 and sample.candidate_tokens[4][1].replace(" ", "␣") in buttons.nth(1).inner_text()
    buttons.nth(1).click()
    candidates, _ = normalise_jointly(run.maps("multi", "tam").candidate_maps)
    assert_painted(page, sample, candidates[4, 1])
    assert page.page.get_attribute("body", "data-painted") == "candidate:4:1:tam"


def test_switching_the_variant_repaints(report, browser):
    run = open_run(report / "run")
    sample = run.sample("multi")
    page = Page(browser, report / "html" / "samples" / "multi.html")
    page.page.click("[data-answer-index='9']")
    page.page.check("input[name=variant][value=cam]")
    page.page.uncheck("input[name=variant][value=tam]")
    assert_painted(page, sample, answer_row(run, "multi", "cam", 9))
    assert page.page.get_attribute("body", "data-painted") == "answer:9:-1:cam"
    cam = run.maps("multi", "cam")
    np.testing.assert_array_equal(cam.final, cam.cam)


def test_word_grouping_shows_the_max_over_the_word(report, browser):
    run = open_run(report / "run")
    sample = run.sample("multi")
    page = Page(browser, report / "html" / "samples" / "multi.html")
    page.page.check("#group-words")
    page.page.click("[data-answer-index='3']")
    rows = [answer_row(run, "multi", "tam", k) for k in (2, 3, 4)]
    assert_painted(page, sample, np.maximum.reduce(rows))
    assert page.page.locator(".tok.answer.current").count() == 3


def test_prompt_tokens_paint_their_maps(report, browser):
    run = open_run(report / "run")
    sample = run.sample("multi")
    maps = run.maps("multi", "tam")
    page = Page(browser, report / "html" / "samples" / "multi.html")
    page.page.click("[data-prompt-index='2']")
    prompt, _ = normalise(maps.prompt_maps, maps.prompt_relevance, DEFAULT_SCALE)
    assert_painted(page, sample, prompt[2])
    assert page.page.locator(".tok.prompt.later").count() == len(sample.context_positions) - 2


def test_video_frames_each_get_their_slice(report, browser):
    run = open_run(report / "run")
    sample = run.sample("video")
    page = Page(browser, report / "html" / "samples" / "video.html")
    page.page.click("[data-answer-index='2']")
    assert page.page.locator(".block.video figure").count() == 6  # 3 slices x 2 frames
    assert page.page.locator(".block.video figcaption").all_inner_texts()[:2] == ["frame 0", "frame 1"]
    assert_painted(page, sample, answer_row(run, "video", "tam", 2))


def test_hostile_strings_display_literally_and_never_run(report, browser):
    page = Page(browser, report / "html" / "samples" / "evil.html")
    for k in range(3):
        page.page.click(f"[data-answer-index='{k}']")
        assert page.page.locator(f"[data-answer-index='{k}']").text_content() == EVIL[k]
        assert page.page.locator(f"[data-prompt-index='{k}']").text_content() == EVIL[k]
    texts = page.page.locator("#candidates button").all_text_contents()
    assert any("</script><script>alert(1)</script>" in t for t in texts)
    assert page.page.locator("img[src=x]").count() == 0
    assert page.dialogs == [] and page.errors == [] and page.outside_requests() == []


def test_index_links_open_every_page(report, browser):
    page = Page(browser, report / "html" / "index.html", ready="a.sample-link")
    links = page.page.locator("a.sample-link")
    assert links.all_inner_texts() == ["evil", "multi", "video"]
    for k in range(3):
        page.page.goto(page.url)
        page.page.locator("a.sample-link").nth(k).click()
        page.page.wait_for_selector("body[data-ready='1']")
        page.page.click("#to-index")
        page.page.wait_for_selector("a.sample-link")
    assert page.errors == [] and page.outside_requests() == []


def test_a_sample_without_maps_says_how_to_get_them(tmp_path, browser):
    run = create_run(tmp_path / "run", synthetic_run_info())
    run.write_sample(synthetic_sample("bare", grids=[(1, 3, 3)]))
    assert render_run(tmp_path / "run", tmp_path / "html").unexplained == ["bare"]
    page = Page(browser, tmp_path / "html" / "samples" / "bare.html")
    page.page.click("[data-answer-index='2']")
    assert "run `tamx explain`" in page.page.inner_text("#status")
    assert page.errors == [] and page.outside_requests() == []


# ---------------------------------------------------------------- the research instrument


@pytest.fixture(scope="module")
def instrument(tmp_path_factory):
    """A run of a model stored under an absolute folder: multi-turn, one-hot maps placed by box,
    an all-zero map; and a second run of the same sample ids with another tokenisation."""
    from tamx import Maps, Media
    from tamx.records import VisionBlock

    root = tmp_path_factory.mktemp("instrument")
    info = synthetic_run_info()
    info.model_id = str(root / "checkpoints" / "model-a")
    run = create_run(root / "a", info)
    turns = synthetic_sample("turns", grids=[(1, 4, 5)], n_context=12, n_answer=6, seed=5)
    strings = [turns.tokens[p] for p in turns.context_positions]
    turns.messages = [
        {"role": role, "content": [{"type": "text", "text": "".join(part)}]}
        for role, part in zip(["user", "assistant", "user"], [strings[:5], strings[5:8], strings[8:]])
    ]
    turns.meta = {"mode": "teacher-forced"}
    turns.answer_logprobs = np.log(np.linspace(0.2, 0.9, 6)).astype(np.float32)
    run.write_sample(turns)
    for settings in (ExplainSettings(), ExplainSettings(eci="off", filter="none")):
        run.write_maps("turns", explain_sample(turns, settings))

    # 4x4 grid over a 64x48 grey image, placed in the box (16, 8, 48, 40): a crop
    boxed = synthetic_sample("boxed", grids=[(1, 4, 4)], n_answer=3, n_context=3, media=False, seed=6)
    boxed.vision_blocks = (
        VisionBlock(**{**boxed.vision_blocks[0].to_json(), "grid": (1, 4, 4), "box": (16, 8, 48, 40)}),
    )
    grey = cv2.imencode(".png", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()
    boxed.media = [Media(item=0, kind="image", mime="image/png", data=grey)]
    tam = np.zeros((3, 16), np.float32)
    tam[0, 1 * 4 + 2] = 2.5  # token 0: one hot cell (1, 2); token 2: an empty map
    tam[1, 0] = 1.0
    relevance = np.zeros((3, 3), np.float32)
    relevance[0, 1] = 5.0
    run.write_sample(boxed)
    run.write_maps(
        "boxed",
        Maps(
            "tam",
            {},
            cam=tam,
            eci=tam,
            final=tam,
            text_relevance=relevance,
            answer_relevance=np.zeros((3, 3), np.float32),
        ),
    )
    render_run(root / "a", root / "html")

    other = create_run(root / "b", synthetic_run_info())
    twin = synthetic_sample("turns", grids=[(1, 4, 5)], n_context=12, n_answer=7, seed=8)
    twin.tokens = list(twin.tokens)
    words = [turns.tokens[p] for p in turns.answer_positions]
    split = [*words[:2], words[2][:2], words[2][2:], *words[3:]]  # answer word 2 in two tokens
    for p, text in zip(twin.answer_positions, split):
        twin.tokens[p] = text
    other.write_sample(twin)
    other.write_maps("turns", explain_sample(twin))
    render_run([root / "a", root / "b"], root / "html-ab")
    return root


def test_click_pins_hover_previews_leaving_restores_and_escape_unpins(instrument, browser):
    page = Page(browser, instrument / "html" / "samples" / "turns.html")
    p = page.page
    p.click("[data-answer-index='1']")
    assert p.get_attribute("[data-answer-index='1']", "aria-selected") == "true"
    p.hover("[data-answer-index='4']")
    assert p.get_attribute("body", "data-painted") == "answer:4:-1:tam"
    assert p.get_attribute("[data-answer-index='1']", "aria-selected") == "true", "hover does not move the pin"
    assert p.locator("[aria-selected='true']").count() == 1
    p.hover("header")
    assert p.get_attribute("body", "data-painted") == "answer:1:-1:tam", "leaving restores the pinned token"
    assert p.evaluate("() => window.tamx.state") == {
        "sample": "turns",
        "variant": "tam",
        "variants": ["tam"],
        "scale": "map",
        "run": 0,
        "kind": "answer",
        "index": 1,
        "candidate": -1,
        "stop": None,
        "spanRule": "mean",
        "pinned": {"run": 0, "kind": "answer", "index": 1, "candidate": -1},
    }
    p.keyboard.press("Escape")
    assert p.locator("[aria-selected='true']").count() == 0 and p.evaluate("() => window.tamx.state.pinned") is None
    assert page.errors == [] and page.outside_requests() == []


def test_roles_forced_answer_and_probabilities_are_shown(instrument, browser):
    page = Page(browser, instrument / "html" / "samples" / "turns.html")
    roles = page.page.locator(".conversation .role").all_inner_texts()
    assert [r.lower() for r in roles] == [
        "user",
        "assistant (earlier turn, context)",
        "user",
        "assistant · explained answer · teacher-forced: a given answer, not generated",
    ]
    page.page.click("[data-answer-index='5']")
    status = page.page.inner_text("#status")
    assert "p = 90.0%, forced" in status and "␣" in status, status


def test_colour_bar_gives_the_raw_joint_range_and_cells_their_values(instrument, browser):
    run = open_run(instrument / "a")
    maps = run.maps("boxed", "tam")
    page = Page(browser, instrument / "html" / "samples" / "boxed.html")
    p = page.page
    p.select_option("#scale", "joint")
    p.click("[data-answer-index='0']")
    low, high = (float(p.inner_text(f".column .bar-{end}")) for end in ("low", "high"))
    assert (low, high) == (0.0, 5.0), "min and max of the map and the text relevance together (Eq. 3)"
    assert maps.final[0].max() == 2.5 and p.locator(".column .empty").is_hidden()
    box = p.locator(".frame canvas").bounding_box()
    p.mouse.move(box["x"] + box["width"] * (2.5 / 4), box["y"] + box["height"] * (1.5 / 4))
    cell = p.inner_text("#cell")
    assert "cell (1, 2)" in cell and "0.502 of the scale" in cell and "raw 2.51" in cell, cell
    p.click("[data-answer-index='2']")
    assert p.locator(".column .empty").is_visible() and "Empty map" in p.inner_text(".column .empty")


def test_a_map_lands_on_the_source_pixels_of_its_box(instrument, browser):
    page = Page(browser, instrument / "html" / "samples" / "boxed.html")
    p = page.page
    p.click("[data-answer-index='0']")
    image = p.locator(".frame img").bounding_box()
    canvas = p.locator(".frame canvas").bounding_box()
    scale_x, scale_y = image["width"] / 64, image["height"] / 48

    def source(x, y):
        return (x - image["x"]) / scale_x, (y - image["y"]) / scale_y

    assert source(canvas["x"], canvas["y"]) == pytest.approx((16, 8), abs=0.5)
    assert source(canvas["x"] + canvas["width"], canvas["y"] + canvas["height"]) == pytest.approx((48, 40), abs=0.5)
    pixels = Page.canvases(page)[0]
    hot = np.argwhere((pixels[..., :3] != colormap_lut()[0]).any(axis=-1))
    assert hot.tolist() == [[1, 2]], "one hot cell, row 1 column 2 of the grid: source pixels x 32..40, y 16..24"
    assert "placement assumed" not in p.inner_text(".block h3")
    assert p.locator(".frame .seen").count() == 1, "the rest of the image is marked as never seen"
    multi = Page(browser, instrument / "html" / "samples" / "turns.html")
    assert "placement assumed" in multi.page.inner_text(".block h3")


def test_compare_variants_side_by_side(instrument, browser):
    run = open_run(instrument / "a")
    sample = run.sample("turns")
    page = Page(browser, instrument / "html" / "samples" / "turns.html")
    p = page.page
    p.check("input[name=variant][value=cam]")
    p.click("[data-answer-index='3']")
    assert p.locator("#media .column").count() == 2
    for variant in ("cam", "tam"):
        got = page.canvases(f".column[data-variant='{variant}'] .frame canvas")
        want = expected_canvases(sample, answer_row(run, "turns", variant, 3))
        assert len(got) == len(want) == 1
        np.testing.assert_array_equal(got[0], want[0])
    assert p.get_attribute("body", "data-painted") == "answer:3:-1:cam+tam"


def test_show_ticks_exactly_the_given_variants(instrument, browser):
    run = open_run(instrument / "a")
    sample = run.sample("turns")
    page = Page(browser, instrument / "html" / "samples" / "turns.html")
    p = page.page
    p.click("[data-answer-index='2']")
    p.evaluate("() => window.tamx.show(['tam', 'cam'])")
    assert p.evaluate("() => window.tamx.state.variants") == ["cam", "tam"]  # in the page's order
    assert p.get_attribute("body", "data-painted") == "answer:2:-1:cam+tam"
    assert p.locator("#media .column").count() == 2
    p.evaluate("() => window.tamx.show(['tam', 'nope'])")
    assert p.is_checked("input[name=variant][value=tam]") and not p.is_checked("input[name=variant][value=cam]")
    assert p.locator("#media .column").count() == 1
    assert_painted(page, sample, answer_row(run, "turns", "tam", 2))
    p.evaluate("() => window.tamx.show(['nope'])")  # nothing the page has: no change
    assert p.evaluate("() => window.tamx.state.variants") == ["tam"]
    assert page.errors == []


def test_two_runs_side_by_side_align_by_word(instrument, browser):
    a, b = open_run(instrument / "a"), open_run(instrument / "b")
    page = Page(browser, instrument / "html-ab" / "samples" / "turns.html")
    p = page.page
    assert p.locator(".conversation").count() == 2 and "model-a" in p.inner_text("#model")
    p.click(".conversation[data-run='0'] [data-answer-index='2']")  # word 2: one token in a, two in b
    current = p.locator(".conversation[data-run='1'] .tok.answer.current")
    assert current.count() == 2
    for r, run, row in ((0, a, answer_row(a, "turns", "tam", 2)), (1, b, None)):
        if row is None:
            row = np.maximum(answer_row(b, "turns", "tam", 2), answer_row(b, "turns", "tam", 3))
        got = page.canvases(f".column[data-run='{r}'] .frame canvas")
        want = expected_canvases(run.sample("turns"), row)
        np.testing.assert_array_equal(got[0], want[0])
    assert page.errors == [] and page.outside_requests() == []


def test_no_page_carries_the_checkout_or_a_temp_path(instrument, browser):
    for folder in ("html", "html-ab"):
        for path in (instrument / folder).rglob("*.html"):
            page = Page(browser, path, ready="body")
            content = page.page.content()
            for forbidden in (str(instrument), str(Path.cwd()), os.path.realpath("/tmp")):
                assert forbidden not in content, (path, forbidden)
    page = Page(browser, instrument / "html" / "samples" / "turns.html")
    assert page.page.inner_text("#model") == "model-a"


def test_load_rerenders_and_keeps_the_pinned_token(instrument, browser):
    from tamx.report import page_data

    run = open_run(instrument / "b")
    payload = page_data(run.sample("turns"), {"tam": run.maps("turns", "tam")}, run.info)
    page = Page(browser, instrument / "html" / "samples" / "turns.html")
    p = page.page
    p.click("[data-answer-index='4']")
    p.evaluate("(data) => window.tamx.load(data)", payload)
    assert p.locator("[data-answer-index]").count() == 7
    assert p.get_attribute("[data-answer-index='4']", "aria-selected") == "true"
    assert_painted(page, run.sample("turns"), answer_row(run, "turns", "tam", 4))
    p.evaluate("(data) => window.tamx.load(data)", {**payload, "answer_words": [0, 1, 2], "segments": []})
    assert p.evaluate("() => window.tamx.state.pinned") is None, "the pinned token no longer exists"
    assert page.errors == []


def test_notebook_view_is_the_same_working_page(instrument, browser, tmp_path):
    import tamx

    view = tamx.show(instrument / "a", "turns", variant=["tam", "cam"])
    wrapper = tmp_path / "html" / "notebook.html"
    wrapper.parent.mkdir()
    wrapper.write_text(f"<!DOCTYPE html><html><body>{view._repr_html_()}</body></html>")
    page = Page(browser, wrapper, ready="iframe")
    frame = page.page.frame_locator("iframe")
    frame.locator("body[data-ready='1']").wait_for()
    frame.locator("[data-answer-index='2']").click()
    assert frame.locator("[data-answer-index='2']").get_attribute("aria-selected") == "true"
    assert frame.locator("#media .column").count() == 2, "the variants asked for, side by side"
    inner = page.page.frames[1]
    got = read_canvases(inner, "#media .column[data-variant=tam] .frame canvas")
    run = open_run(instrument / "a")
    np.testing.assert_array_equal(got[0], expected_canvases(run.sample("turns"), answer_row(run, "turns", "tam", 2))[0])
    assert page.errors == [] and page.outside_requests() == []
