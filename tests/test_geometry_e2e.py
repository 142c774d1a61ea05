"""End to end on tiny models (issue 9): encode an image with a red marker, find the marker's
cell from the STORED geometry (`tamx.layout.map_frames` boxes), store a map that is 1 on exactly
that cell, and check that the HTML report (read back in Chromium) and the PNG figure draw the
hot cell onto the marker's source pixels, within half a cell (and within a tenth of a cell of
the stored cell's centre). That the stored boxes themselves agree with the cells the model's
pixels hold the marker in is tests/test_encode_geometry.py's marker test, for these same shapes.
Run with `-s` to see where each cell was drawn."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import tamx
from tamx.layout import map_frames
from tamx.report import colormap_lut

# (family, image size (w, h), marker pixel (x, y))
CASES = {
    # LLaVA-1.5 centre-crops a 2:1 image to its middle square: the model saw x = 84..252 only
    "llava-crop": ("llava", (336, 168), (200, 100)),
    # InternVL dynamic tiles: 3 x 2 tiles of 224 px plus the thumbnail, each its own block
    "internvl-tiles": ("internvl", (672, 448), (500, 300)),
    # LLaVA-OneVision anyres: 3 x 2 tiles in one block (row newlines) plus the base view
    "onevision-tiles": ("llava_onevision", (1152, 768), (700, 300)),
}


def _marker_cell(frames, x: float, y: float) -> tuple[int, int, int]:
    """(frame index, row, col) of the cell holding source pixel centre (x, y): among the grids
    whose box holds it, the finest (a tile over the thumbnail / base view)."""
    best = None
    for k, frame in enumerate(frames):
        x0, y0, x1, y1 = frame.box
        if not (x0 <= x < x1 and y0 <= y < y1):
            continue
        cell_w, cell_h = (x1 - x0) / frame.width, (y1 - y0) / frame.height
        if best is None or cell_w * cell_h < best[0]:
            best = (cell_w * cell_h, k, int((y - y0) // cell_h), int((x - x0) // cell_w))
    assert best is not None, f"no stored grid holds the marker at ({x}, {y})"
    return best[1:]


@pytest.fixture(scope="module")
def encoded(tiny_model_dir, tmp_path_factory):
    """A function: case -> (folder, sample, frames, marker frame index, row, col), with the
    run encoded through `tamx.pipeline.encode`, the one-hot map stored as variant 'marker' and the
    report rendered by `tamx render` (built once per case)."""
    from click.testing import CliRunner
    from tamx.pipeline.cli import main
    from tamx.pipeline.encode import encode, inline_input, load_model, load_processor

    from .geometry_markers import marker_image

    built = {}

    def get(case: str):
        if case in built:
            return built[case]
        family, (width, height), (mx, my) = CASES[case]
        root = tmp_path_factory.mktemp(case)
        image = marker_image(width, height, mx, my)
        cv2.imwrite(str(root / "marker.png"), image[:, :, ::-1])
        path = str(tiny_model_dir(family))
        sample = inline_input((str(root / "marker.png"),), None, "Describe the image.", "A dot.", "m")
        report = encode(load_model(path, device="cpu", dtype="fp32"), load_processor(path), [sample], root / "run")
        assert report.failed == {}
        run = tamx.open_run(root / "run", mode="a")
        stored = run.sample("m")
        frames = map_frames(stored.vision_blocks)
        assert all(f.box is not None and f.image_size == (width, height) for f in frames)
        k, row, col = _marker_cell(frames, int(mx) + 0.5, int(my) + 0.5)
        n, m = len(stored.answer_positions), len(stored.context_positions)
        tam = np.zeros((n, stored.vision_size), np.float32)
        tam[0, frames[k].offset + row * frames[k].width + col] = 1.0
        zeros = np.zeros((n, m), np.float32)
        run.write_maps(
            "m",
            tamx.Maps(
                "marker",
                {},
                cam=tam,
                eci=tam,
                final=tam,
                text_relevance=zeros,
                answer_relevance=np.zeros((n, n), np.float32),
            ),
        )
        result = CliRunner().invoke(main, ["render", str(root / "run"), "--out", str(root / "html"), "--quiet"])
        assert result.exit_code == 0, result.output
        built[case] = (root, tamx.open_run(root / "run").sample("m"), frames, k, row, col)
        return built[case]

    return get


def _check_placement(case: str, frame, row: int, col: int, x: float, y: float) -> None:
    """Where the hot cell was drawn, (x, y) in source pixels: within half a cell of the marker
    (its middle pixel's centre), and within a tenth of a cell of the stored cell's centre."""
    from tamx.geometry import cell_centre

    _, _, (mx, my) = CASES[case]
    x0, y0, x1, y1 = frame.box
    cell_w, cell_h = (x1 - x0) / frame.width, (y1 - y0) / frame.height
    cx, cy = cell_centre(frame, row, col)
    to_marker = max(abs(x - (int(mx) + 0.5)) / cell_w, abs(y - (int(my) + 0.5)) / cell_h)
    to_centre = max(abs(x - cx) / cell_w, abs(y - cy) / cell_h)
    where = f"{case}: drawn at ({x:.2f}, {y:.2f}), marker ({mx}, {my}), cell centre ({cx:.2f}, {cy:.2f})"
    print(f"{where}: {to_marker:.3f} cells from the marker, {to_centre:.3f} from the centre")
    assert to_marker <= 0.5, f"{where}: {to_marker:.2f} cells from the marker"
    assert to_centre <= 0.1, f"{where}: {to_centre:.2f} cells from the stored cell's centre"


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_report_draws_the_marker_cell_on_the_marker(encoded, chromium, case):
    from .test_browser import Page

    _, (width, height), _ = CASES[case]
    root, _, frames, k, row, col = encoded(case)
    page = Page(chromium, root / "html" / "samples" / "m.html")
    page.page.click("[data-answer-index='0']")
    canvases = page.canvases()
    assert len(canvases) == len(frames), "one canvas per stored grid (tiles and thumbnail each their own)"
    cold = colormap_lut()[0]
    hot = [
        (c, rc.tolist()) for c, pixels in enumerate(canvases) for rc in np.argwhere((pixels[..., :3] != cold).any(-1))
    ]
    assert hot == [(k, [row, col])], "exactly one hot canvas pixel: the marker's cell of the marker's grid"
    figure = page.page.locator("#media .frame").nth(k)
    image, canvas = figure.locator("img").bounding_box(), figure.locator("canvas").bounding_box()
    natural = figure.locator("img").evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    assert natural == [width, height], "the page shows the source image at its own size"
    frame = frames[k]
    # the hot pixel's centre on the page, then in source pixels of the displayed image
    px = canvas["x"] + (col + 0.5) * canvas["width"] / frame.width
    py = canvas["y"] + (row + 0.5) * canvas["height"] / frame.height
    sx, sy = (px - image["x"]) * width / image["width"], (py - image["y"]) * height / image["height"]
    _check_placement(case, frame, row, col, sx, sy)
    assert page.errors == [] and page.outside_requests() == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_png_figure_draws_the_marker_cell_on_the_marker(encoded, tmp_path, case):
    from tamx.figures import FigureStyle, save_figure, token_figure

    _, (width, height), _ = CASES[case]
    root, sample, frames, k, row, col = encoded(case)
    run = tamx.open_run(root / "run")
    figure = token_figure(sample, run.maps("m", "marker"), 0, FigureStyle(alpha=1.0, dpi=300))
    save_figure(figure, tmp_path / "token.png", "png", 300)
    png = cv2.imread(str(tmp_path / "token.png"))[..., ::-1].astype(np.int32)
    panels = [ax for ax in figure.axes if ax.images]
    assert len(panels) == len(frames), "one panel per stored grid"
    lut = colormap_lut().astype(np.int32)
    hot_panels = []
    for p, (ax, frame) in enumerate(zip(panels, frames)):
        assert ax.get_xlim() == (0, width) and ax.get_ylim() == (height, 0), "the panel spans the source image"
        x0, y0, x1, y1 = (round(v) for v in ax.get_window_extent().extents)
        top = png.shape[0] - y1
        crop = png[top : png.shape[0] - y0, x0:x1]
        # PNG pixel centres in source pixels; only the map overlay counts (outside the box the image
        # is shaded: a darkened red marker would pass for heat)
        rows, cols = np.indices(crop.shape[:2]).reshape(2, -1)
        display = np.stack([x0 + cols + 0.5, png.shape[0] - (top + rows + 0.5)], axis=1)
        source = ax.transData.inverted().transform(display)
        bx0, by0, bx1, by1 = frame.box
        over = (source[:, 0] >= max(bx0, 0)) & (source[:, 0] < min(bx1, width))
        over &= (source[:, 1] >= max(by0, 0)) & (source[:, 1] < min(by1, height))
        # invert the colour map: nearest LUT entry, kept where the colour is (nearly) on the map
        colours, which = np.unique(crop.reshape(-1, 3)[over], axis=0, return_inverse=True)
        distance = np.abs(colours[:, None, :] - lut[None]).sum(-1)
        value, off = distance.argmin(-1)[which.ravel()], distance.min(-1)[which.ravel()]
        assert np.median(off) <= 24, "inside its box the panel shows the map's colours"
        hot = (value >= 192) & (off <= 24)
        if hot.any():
            hot_panels.append(p)
            sx, sy = source[over][hot].mean(axis=0)
    assert hot_panels == [k], "heat only in the panel of the marker's grid"
    _check_placement(case, frames[k], row, col, sx, sy)
