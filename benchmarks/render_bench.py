"""How big and how fast is a report page? Headless Chromium driven by Playwright.

The case of the issue: 391 vision cells (a 640x480 image at Qwen2-VL's 17x23 grid) and 128
answer tokens, a 640x480 JPEG, TAM and CAM variants with candidates and prompt maps.
Prints the page size, the time from navigation start until the page is interactive, and the
time one token switch takes to repaint over every answer token, with one variant shown and
with two side by side (compare mode): the click handler (pin, maps onto the canvases, colour
bar, text colours, candidates)
plus the style recalculation and layout it causes, forced synchronously. (The time until the
next frame is shown also waits for the display's next 60 Hz tick, which no page can shorten.)

    python benchmarks/render_bench.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import sync_playwright
from tamx.pipeline.render import render_run

from tamx import ExplainSettings, Media, create_run, explain_sample
from tamx.synthetic import synthetic_run_info, synthetic_sample

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SWITCH_ALL_TOKENS = """() => {
  const spans = [...document.querySelectorAll('[data-answer-index]')];
  const times = [];
  for (const span of spans) {
    const start = performance.now();
    span.click();
    document.body.getBoundingClientRect(); // force the style recalculation and layout it caused
    times.push(performance.now() - start);
  }
  return times;
}"""


def photo_jpeg() -> bytes:
    """A 640x480 JPEG with smooth gradients and a few shapes, like a photo compresses."""
    yy, xx = np.mgrid[0:480, 0:640]
    image = np.dstack([xx / 640 * 255, yy / 480 * 255, (xx + yy) % 256]).astype(np.uint8)
    cv2.circle(image, (200, 220), 90, (30, 40, 220), -1)
    cv2.rectangle(image, (380, 120), (560, 330), (40, 200, 60), -1)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def build_page(folder: Path) -> Path:
    sample = synthetic_sample(
        "bench", grids=[(1, 17, 23)], n_answer=128, n_context=20, hidden_size=1536, dtype="bfloat16", media=False
    )
    sample.media = [Media(item=0, kind="image", mime="image/jpeg", data=photo_jpeg())]
    run = create_run(folder / "run", synthetic_run_info(dtype="bfloat16"))
    run.write_sample(sample)
    for settings in (ExplainSettings(), ExplainSettings(eci="off", filter="none")):
        run.write_maps(sample.id, explain_sample(sample, settings))
    return render_run(folder / "run", folder / "html").pages["bench"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="page loads to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        page_path = build_page(Path(tmp))
        size = page_path.stat().st_size
        ready, switches, compared = [], [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            for _ in range(args.repeats):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(page_path.as_uri())
                page.wait_for_selector("body[data-ready='1']")
                ready.append(float(page.get_attribute("body", "data-ready-ms")))
                switches += page.evaluate(SWITCH_ALL_TOKENS)
                page.check("input[name=variant][value=cam]")  # tam and cam side by side
                compared += page.evaluate(SWITCH_ALL_TOKENS)
                page.close()
            browser.close()
    print("| measure | value | target |")
    print("| --- | --- | --- |")
    print(f"| page size (391 x 128, 640x480 JPEG, tam + cam) | {size / 1e6:.2f} MB | <= 1.5 MB |")
    interactive = f"{statistics.median(ready):.0f} ms (max {max(ready):.0f})"
    print(f"| interactive after navigation start (median of {len(ready)}) | {interactive} | < 1000 ms |")
    q = statistics.quantiles(switches, n=100)
    spread = f"median {statistics.median(switches):.2f} ms, p99 {q[98]:.2f} ms, max {max(switches):.2f} ms"
    print(f"| token switch: handler + style + layout ({len(switches)} switches) | {spread} | < 16 ms |")
    q = statistics.quantiles(compared, n=100)
    spread = f"median {statistics.median(compared):.2f} ms, p99 {q[98]:.2f} ms, max {max(compared):.2f} ms"
    print(f"| token switch, tam and cam side by side ({len(compared)} switches) | {spread} | < 16 ms |")


if __name__ == "__main__":
    main()
