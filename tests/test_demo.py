"""`tamx demo` end to end with the bundled toy model: report, notice, variants, a two-image sample."""

import re

import pytest
from click.testing import CliRunner

pytest.importorskip("transformers")

from tamx.pipeline.cli import main
from tamx.pipeline.demo.run import MODEL_DIR, NOTICE


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL_DIR / "config.json").is_file(), reason="the bundled demo model is not built")
def test_demo_writes_the_report_with_the_notice(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    index = tmp_path / "demo" / "report" / "index.html"
    assert result.stdout.strip().splitlines()[-1] == str(index)
    assert "toy" in result.stderr and "tamx encode --model" in result.stderr
    html = index.read_text()
    assert "is a toy" in html and "not a real VLM" in html
    pages = sorted((tmp_path / "demo" / "report" / "samples").glob("*.html"))
    assert [p.stem for p in pages] == ["one-shape", "three-shapes", "two-images", "two-shapes"]
    for page in pages:
        text = page.read_text()
        assert "not a real VLM" in text
        for variant in ("tam", "cam", "eci"):
            assert f'"{variant}"' in text
    # the bundled model (v2) says what each input shows (docs/demo.md)
    from tamx.pipeline.demo.run import demo_scenes

    from tamx import open_run
    from tamx.tokens import token_strings

    run = open_run(tmp_path / "demo" / "run")
    for sample_id, scenes in demo_scenes().items():
        sample = run.sample(sample_id, media=False)
        strings = token_strings(sample)
        said = "".join(strings[p] for p in sample.answer_positions).replace("</s>", "").strip()
        assert said == " ".join(s.caption for s in scenes), sample_id
    # the two-image sample carries two images, each with its own 12 x 12 map block
    two = (tmp_path / "demo" / "report" / "samples" / "two-images.html").read_text()
    blocks = re.findall(r'"grid": \[1, 12, 12\]', two)
    assert len(blocks) == 2, "expected two 12x12 vision blocks"
    # a second run into the same folder is refused with the fix, and --overwrite replaces it
    again = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert again.exit_code != 0 and "--overwrite" in again.output
    replaced = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert index.is_file()


def test_notice_says_how_to_run_a_real_model():
    assert "toy" in NOTICE and "not a real VLM" in NOTICE and "tamx encode --model" in NOTICE


@pytest.mark.skipif(not (MODEL_DIR / "config.json").is_file(), reason="the bundled demo model is not built")
def test_the_short_name_is_the_bundled_model():
    from tamx.pipeline.demo import DEMO_MODEL, resolve_model
    from tamx.pipeline.encode.loading import load_processor

    assert DEMO_MODEL == "tamx-demo" and resolve_model("tamx-demo") == str(MODEL_DIR)
    assert resolve_model("Qwen/Qwen2-VL-2B-Instruct") == "Qwen/Qwen2-VL-2B-Instruct"
    processor = load_processor("tamx-demo")
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == 3


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL_DIR / "config.json").is_file(), reason="the bundled demo model is not built")
def test_the_benchmark_is_the_documented_commands(tmp_path):
    """tamx shapes -> tamx encode --model tamx-demo -> tamx explain -> tamx eval, as docs/demo.md shows."""
    data, run = tmp_path / "shapes", tmp_path / "run"
    steps = [
        ["shapes", "--out", str(data), "--scenes", "2", "--seed", "1000"],
        ["encode", "--model", "tamx-demo", "--manifest", str(data / "manifest-true.jsonl"), "--out", str(run),
         "--device", "cpu", "--quiet"],
        ["explain", str(run), "--quiet"],
        ["eval", str(run), "--dataset", "folder", "--data", str(data), "--quiet"],
    ]  # fmt: skip
    for argv in steps:
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 0, (argv, result.output)
    lines = result.stdout.splitlines()
    assert lines[0] == "folder: protocol tamx, threshold Otsu" and "Point" in lines[1]  # the title, then the heading
    classes = [line.split()[1] for line in lines if line.startswith("tam ") and len(line.split()) == 7]
    assert classes == ["colour", "shape"]
    assert "teacher-forced" in result.stdout  # the true captions were given: no caption scores
