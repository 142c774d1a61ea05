"""The report's data: packing, joint normalisation, words, pages and figures (no browser)."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.render import sample_page
from tamx import explain_sample, open_run
from tamx.figures import ascii_text, grid_figure, token_figure
from tamx.report import colormap_lut, normalise_jointly, pack_array, page_data, unpack_array
from tamx.synthetic import synthetic_run_info, synthetic_sample
from tamx.words import group_words, word_index


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
    assert [b["slices"][-1]["offset"] for b in data["blocks"]] == [0, 29]
    assert data["blocks"][1]["slices"][1]["frames"] == [2, 3] and len(data["blocks"][1]["slices"][1]["images"]) == 2
    answer = unpack_array(data["variants"]["tam"]["answer"])
    expected, _ = normalise_jointly(maps.tam, np.concatenate([maps.text_relevance, maps.answer_relevance], axis=1))
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
    assert "&lt;b&gt;model&lt;/b&gt;" in html
    data = re.search(r'<script type="application/json" id="tamx-data">(.*?)</script>', html, re.S).group(1)
    assert json.loads(data)["candidates"][0] == EVIL


def test_figures_are_drawn(tmp_path):
    sample = synthetic_sample("s", grids=[(1, 6, 8), (2, 4, 4)])
    maps = explain_sample(sample)
    figure = token_figure(sample, maps, 3)
    assert figure.ndim == 3 and figure.shape[2] == 3 and figure.dtype == np.uint8 and figure.shape[1] >= 480
    grid = grid_figure(sample, maps, [0, 4, 7])
    assert grid.shape[0] > 3 * 100 and grid.std() > 10
    assert ascii_text("café\n→") == "caf? ?"


def test_render_command_writes_pages_index_and_figures(run_path, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["explain", str(run_path), "--quiet"]).exit_code == 0
    out = tmp_path / "html"
    result = runner.invoke(main, ["render", str(run_path), "--out", str(out), "--png", "--tokens", "0,2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"open {out / 'index.html'}" in result.output
    for sample_id in ("img", "multi", "video"):
        assert (out / "samples" / f"{sample_id}.html").is_file()
        assert sorted(p.name for p in (out / "figures" / sample_id).iterdir()) == [
            "grid.png",
            "token_000.png",
            "token_002.png",
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
