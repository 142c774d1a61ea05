"""Nothing lost, nothing hidden (issue 20) through the command line: one bad record never blocks
a report (5) and nothing a run holds reaches the terminal unescaped (6). No model, no torch.

Class 7 (the server's input bounds) is in test_serve.py, beside the other hostile requests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tamx import create_run, explain_sample
from tamx.records import RunInfo
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .refusals import tamx_cli

OSC = "\x1b]0;owned\x07\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\"  # a title and a hyperlink
# What must never reach a terminal: C0 and C1 controls (ESC included), DEL, bidi controls, surrogates.
UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _write(path: Path, spoil=None, info: RunInfo | None = None) -> Path:
    """A run of samples a, b (a video) and c, explained; `spoil(sample)` changes b before it is stored."""
    run = create_run(path, info or synthetic_run_info())
    for sample_id, grids in (("a", [(1, 4, 5)]), ("b", [(3, 4, 5)]), ("c", [(1, 4, 5)])):
        sample = synthetic_sample(sample_id, grids=grids, n_answer=4, n_context=3, seed=1)
        if sample_id == "b" and spoil is not None:
            spoil(sample)
        run.write_sample(sample)
        run.write_maps(sample_id, explain_sample(sample))
    return path


def _strict(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def page_json(page: Path):
    """The data a page carries, parsed as a browser's JSON.parse would (no NaN, no Infinity)."""
    text = page.read_text(encoding="utf-8")  # raises on a lone surrogate: a page is valid UTF-8
    data = text.split('<script type="application/json" id="tamx-data">', 1)[1].split("</script>", 1)[0]
    return json.loads(data, parse_constant=_strict)


def _set_token(sample, text: str) -> None:
    sample.tokens = list(sample.tokens)
    sample.tokens[sample.answer_positions[0]] = text


def _nan_probabilities(sample) -> None:
    sample.candidate_logprobs = np.full_like(sample.candidate_logprobs, np.nan)
    sample.answer_logprobs = np.full(len(sample.answer_positions), np.inf, np.float32)


# ---------------------------------------------------------------- 5: one bad record, one failed sample

CLEANED = {
    "fps-text": lambda s: s.meta.update(video_fps=["fast"]),
    "fps-nan": lambda s: s.meta.update(video_fps=[float("nan")]),
    "fps-infinite": lambda s: s.meta.update(video_fps=[float("inf")]),
    "fps-not-a-list": lambda s: s.meta.update(video_fps={"rate": 25}),
    "token-lone-surrogate": lambda s: _set_token(s, "\udc80half"),
    "candidate-lone-surrogate": lambda s: setattr(s, "candidate_tokens", [["\ud800", "ok", "x"]] * 4),
    "probabilities-nan": _nan_probabilities,
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The pages of the same run with nothing spoilt: the bytes the others must keep."""
    root = tmp_path_factory.mktemp("baseline")
    result = tamx_cli("render", _write(root / "run"), "--out", root / "html", "--quiet")
    assert result.exit_code == 0, result.output
    return {p.name: p.read_bytes() for p in (root / "html" / "samples").iterdir()}


@pytest.mark.parametrize("spoil", CLEANED.values(), ids=CLEANED.keys())
def test_a_value_json_cannot_hold_is_cleaned_and_every_page_is_written(tmp_path, baseline, spoil):
    result = tamx_cli("render", _write(tmp_path / "run", spoil), "--out", tmp_path / "html", "--quiet")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    pages = tmp_path / "html" / "samples"
    assert sorted(p.name for p in pages.iterdir()) == ["a.html", "b.html", "c.html"]
    data = page_json(pages / "b.html")
    assert all(frame["times"] is None for frame in data["frames"])  # no rate: no times, not NaN ones
    for name in ("a.html", "c.html"):
        assert (pages / name).read_bytes() == baseline[name]
    (tmp_path / "html" / "index.html").read_text(encoding="utf-8")


def test_the_page_data_keeps_what_is_good_around_what_is_not(tmp_path):
    result = tamx_cli("render", _write(tmp_path / "run", _nan_probabilities), "--out", tmp_path / "html")
    assert result.exit_code == 0, result.output
    data = page_json(tmp_path / "html" / "samples" / "b.html")
    assert data["answer_probs"] == [None] * 4 and data["candidate_probs"] == [[None] * 3] * 4
    good = page_json(tmp_path / "html" / "samples" / "a.html")
    assert all(0 < p <= 1 for p in good["answer_probs"])


def test_a_video_rate_gives_frame_times_and_a_bad_one_none(tmp_path):
    _write(tmp_path / "run", lambda s: s.meta.update(video_fps=[2.0]))
    assert tamx_cli("render", tmp_path / "run", "--out", tmp_path / "html").exit_code == 0
    frames = page_json(tmp_path / "html" / "samples" / "b.html")["frames"]
    assert [f["times"] for f in frames] == [[f["frames"][0] / 2, (f["frames"][-1] + 1) / 2] for f in frames]


def test_a_sample_the_page_cannot_be_drawn_from_fails_alone(tmp_path, baseline):
    run = _write(tmp_path / "run", lambda s: s.meta.update(settings="not an object"))
    result = tamx_cli("render", run, "--out", tmp_path / "html", "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "1 sample(s) failed:" in result.output and "  b: cannot draw its page (AttributeError" in result.output
    assert "2 page(s)" in result.output
    pages = tmp_path / "html" / "samples"
    assert sorted(p.name for p in pages.iterdir()) == ["a.html", "c.html"]
    assert all((pages / name).read_bytes() == baseline[name] for name in ("a.html", "c.html"))
    index = (tmp_path / "html" / "index.html").read_text()
    assert 'href="samples/a.html"' in index and 'href="samples/b.html"' not in index


def test_a_non_numeric_eval_score_is_left_out_with_a_warning(tmp_path, caplog):
    run = _write(tmp_path / "run")
    (run / "eval" / "coco").mkdir(parents=True)
    rows = ["sample,variant,kind,score", "a,tam,noun,0.25", "b,tam,noun,high", "c,tam,noun,nan", "c,tam,noun,0.75"]
    (run / "eval" / "coco" / "entries.csv").write_text("\n".join(rows) + "\n")
    result = tamx_cli("render", run, "--out", tmp_path / "html", "--quiet")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # stderr, outside pytest
    assert any("coco/entries.csv: 2 row(s) without a numeric score" in message for message in warned), warned
    index = (tmp_path / "html" / "index.html").read_text()
    assert re.findall(r'<td class="score">([^<]*)</td>', index) == ["0.250 · –", "– · –", "0.750 · –"]
    assert len(list((tmp_path / "html" / "samples").iterdir())) == 3


def test_figures_of_tokens_with_lone_surrogates_are_drawn(tmp_path):
    def spoil(sample):
        _set_token(sample, "\udc80half")
        sample.candidate_tokens = [["\ud800", "ok", "x"]] * 4
        sample.meta["video_fps"] = [float("nan")]

    run = _write(tmp_path / "run", spoil)
    result = tamx_cli("render", run, "--out", tmp_path / "html", "--png", "--samples", "b", "--layout", "frames")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert (tmp_path / "html" / "figures" / "b" / "frames.png").stat().st_size > 0
    assert len(list((tmp_path / "html" / "figures" / "b").glob("token_*.png"))) == 4


def test_a_page_with_cleaned_values_opens_in_chromium(tmp_path, chromium):
    from .test_browser import Page

    def spoil(sample):
        _set_token(sample, "\udc80half")
        _nan_probabilities(sample)
        sample.meta["video_fps"] = [float("nan")]

    assert tamx_cli("render", _write(tmp_path / "run", spoil), "--out", tmp_path / "html").exit_code == 0
    page = Page(chromium, tmp_path / "html" / "samples" / "b.html")
    page.page.click("[data-answer-index='0']")
    assert page.errors == [] and page.outside_requests() == []
    assert "\ufffdhalf" in page.page.inner_text("body")  # the lone half shown as U+FFFD, the rest kept


# ---------------------------------------------------------------- 6: nothing unescaped on a terminal


def _hostile_run(tmp_path: Path) -> Path:
    info = RunInfo(
        model_id=f"org/model{OSC}\u202egnp.exe",
        dtype="float32",
        special_tokens=synthetic_run_info().special_tokens,
        model_revision=f"main{OSC}",
    )
    return _write(tmp_path / "run", lambda s: _set_token(s, f"tok{OSC}"), info=info)


def test_info_escapes_control_sequences_of_a_shared_run(tmp_path):
    result = tamx_cli("info", _hostile_run(tmp_path))
    assert result.exit_code == 0, result.output
    assert not UNPRINTABLE.search(result.output), repr(result.output)
    assert "org/model\\x1b]0;owned\\x07" in result.output and "\\u202egnp.exe" in result.output
    assert "main\\x1b]0;owned" in result.output


def test_info_json_escapes_them_too_and_stays_json(tmp_path):
    result = tamx_cli("info", _hostile_run(tmp_path), "--json")
    assert result.exit_code == 0 and not UNPRINTABLE.search(result.output), repr(result.output)
    assert json.loads(result.output)["model"]["model_id"].startswith(f"org/model{OSC}")


def test_a_shared_runs_folder_name_is_escaped_in_render_messages(tmp_path):
    shared = _write(tmp_path / "run\x1b]0;owned\x07")  # as unpacked from someone's archive
    other = create_run(tmp_path / "other", synthetic_run_info())
    for sample_id in ("a", "c"):
        sample = synthetic_sample(sample_id, grids=[(1, 4, 5)], n_answer=4, n_context=3, seed=1)
        other.write_sample(sample)
    result = tamx_cli("render", shared, tmp_path / "other", "--out", tmp_path / "html", "--quiet")
    assert result.exit_code == 0, result.output
    assert "run\\x1b]0;owned\\x07: 1 sample(s) not in every run, left out: b" in result.output
    assert not UNPRINTABLE.search(result.output), repr(result.output)


def test_printable_escapes_what_a_terminal_acts_on_and_keeps_the_rest():
    from tamx.errors import printable

    assert printable(f"a{OSC}\u202e\udc80\t\x85b") == (
        "a\\x1b]0;owned\\x07\\x1b]8;;http://evil.example\\x1b\\link\\x1b]8;;\\x1b\\\\u202e\\udc80\\t\\x85b"
    )
    assert printable("naïve 日本語 ok, \\ and ' stay") == "naïve 日本語 ok, \\ and ' stay"
