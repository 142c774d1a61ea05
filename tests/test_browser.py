"""The HTML report in headless Chromium (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.render import render_run
from tamx import ExplainSettings, create_run, explain_sample, open_run
from tamx.report import colormap_lut, normalise_jointly
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
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (apt-get install chromium)")
        pytest.skip("Debian's chromium is not installed")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Page:
    """One opened report page with everything it logged and requested."""

    def __init__(self, browser, path: Path, ready: str = "body[data-ready='1']"):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.url = path.resolve().as_uri()
        self.root = next(p for p in path.resolve().parents if p.name == "html").as_uri() + "/"
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(self.url)
        self.page.wait_for_selector(ready)

    def canvases(self) -> list[np.ndarray]:
        """RGBA pixels of every overlay canvas, [H, W, 4] each."""
        raw = self.page.evaluate(
            """() => [...document.querySelectorAll('#media .frame canvas')].map(c =>
                 [c.height, c.width, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)])"""
        )
        return [np.array(pixels, dtype=np.uint8).reshape(h, w, 4) for h, w, pixels in raw]

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
    q, _ = normalise_jointly(maps.tam, np.concatenate([maps.text_relevance, maps.answer_relevance], axis=1))
    return q[index]


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
    assert buttons.count() == 3 and sample.candidate_tokens[4][1] in buttons.nth(1).inner_text()
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
    assert_painted(page, sample, answer_row(run, "multi", "cam", 9))
    cam = run.maps("multi", "cam")
    np.testing.assert_array_equal(cam.tam, cam.cam)


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
    prompt, _ = normalise_jointly(maps.prompt_maps, maps.prompt_relevance)
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
