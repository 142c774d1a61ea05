"""Bad encode inputs through `tamx encode`: a record of the wrong JSON types fails alone with a
message and the run goes on; a manifest that is not UTF-8 is one line; a prompt past the
model's positions is warned about; a full disk stops encode with one line. The model is the
bundled toy VLM (pipeline/demo/model, max_position_embeddings 1024); the manifest cases
that fail every record never load it.
"""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL", reason="transformers' image processors need Pillow (pip install pillow)")

from tamx.pipeline.demo.run import MODEL_DIR
from tamx.pipeline.encode.inputs import read_manifest

from tamx import open_run

from .refusals import refused, tamx_cli

NO_MODEL = "/nonexistent/model"  # never loaded: every record fails before


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "shape.png"
    pixels = np.zeros((48, 48, 3), np.uint8)
    cv2.circle(pixels, (24, 24), 12, (0, 0, 255), -1)
    cv2.imwrite(str(path), pixels)
    return path


def _turn(*content):
    return [{"role": "user", "content": list(content)}]


TEXT = {"type": "text", "text": "What is this?"}
PICTURE = {"type": "image", "image": "shape.png"}

BAD_RECORDS = {
    "messages-string": ({"messages": "Describe the image."}, "a non-empty list of chat turns, not a string"),
    "messages-object": ({"messages": {"role": "user"}}, "not an object"),
    "messages-empty": ({"messages": []}, "messages must be a non-empty list"),
    "messages-null": ({"messages": None}, "not null"),
    "turn-null": ({"messages": [None]}, 'messages[0] must be an object {"role": ..., "content": ...}, not null'),
    "turn-string": ({"messages": ["hi"]}, "messages[0] must be an object"),
    "role-missing": ({"messages": [{"content": "hi"}]}, "messages[0].role is None; use one of system, user, assistant"),
    "role-number": ({"messages": [{"role": 5, "content": "hi"}]}, "messages[0].role is 5"),
    "role-unknown": ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role is 'robot'"),
    "content-number": ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content must be a string or"),
    "content-null": ({"messages": [{"role": "user", "content": None}]}, "not null"),
    "item-null": ({"messages": _turn(PICTURE, None)}, "messages[0].content[1] must be an object"),
    "item-string": ({"messages": _turn("shape.png")}, "messages[0].content[0] must be an object"),
    "text-number": ({"messages": _turn(PICTURE, {"type": "text", "text": 5})}, "content[1].text must be a string"),
    "text-list": ({"messages": _turn(PICTURE, {"type": "text", "text": ["a"]})}, "not a list"),
    "type-number": ({"messages": _turn({"type": 3, "text": "x"})}, "content[0].type must be a string"),
    "image-number": ({"messages": _turn({"type": "image", "image": 5}, TEXT)}, "content[0] is an image without a path"),
    "image-null": ({"messages": _turn({"type": "image", "image": None}, TEXT)}, "is an image without a path"),
    "video-list": ({"messages": _turn({"type": "video", "video": ["a.jpg"]}, TEXT)}, "is a video without a path"),
    "answer-number": ({"messages": _turn(PICTURE, TEXT), "answer": 42}, "answer must be a string (or left out), not"),
    "answer-list": ({"messages": _turn(PICTURE, TEXT), "answer": ["a"]}, "answer must be a string"),
    "later-turn": ({"messages": [*_turn(PICTURE, TEXT), {"role": "assistant", "content": 1}]}, "messages[1].content"),
}  # fmt: skip

BAD_IDS = [
    ({"id": None}, "the id must be a string or an integer, not null"),
    ({"id": True}, "the id must be a string or an integer, not a boolean"),
    ({"id": {"a": 1}}, "not an object"),
    ({"id": 1.5}, "not a number"),
    ({"id": "x" * 300}, "the id is 300 characters long, over the limit of 200"),
    ({"id": "."}, "the id starts with '.'"),
    ({"id": ".."}, "the id starts with '.'"),
    ({"id": "a/b"}, "the id holds '/'"),
    ({"id": "nul"}, "is a reserved name"),
]


def _manifest(tmp_path, records) -> str:
    path = tmp_path / "inputs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return str(path)


def test_every_wrong_json_type_fails_its_record_with_a_message(tmp_path):
    records = [{"id": name, **record} for name, (record, _) in BAD_RECORDS.items()]
    result = tamx_cli(
        "encode", "--model", NO_MODEL, "--manifest", _manifest(tmp_path, records), "--out", tmp_path / "r"
    )
    out = refused(result, f"{len(BAD_RECORDS)} sample(s) failed:")
    for name, (_, expected) in BAD_RECORDS.items():
        line = next(line for line in out.splitlines() if line.startswith(f"  {name}: "))
        assert expected in line, (name, line)
    assert "cannot load model" not in out, "a manifest of bad records fails before the model loads"


def test_bad_ids_fail_their_line(tmp_path):
    records = [{**record, "messages": _turn(PICTURE, TEXT)} for record, _ in BAD_IDS]
    result = tamx_cli(
        "encode", "--model", NO_MODEL, "--manifest", _manifest(tmp_path, records), "--out", tmp_path / "r"
    )
    out = refused(result, f"{len(BAD_IDS)} sample(s) failed:")
    for number, (_, expected) in enumerate(BAD_IDS, 1):
        line = next(line for line in out.splitlines() if line.startswith(f"  inputs.jsonl:{number}: "))
        assert expected in line, line


def test_a_manifest_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps({"id": "a", "messages": _turn(PICTURE, TEXT)})
    path.write_bytes(good.encode() + b"\n" + '{"id": "b", "messages": "caf\xe9"}'.encode("latin-1") + b"\n")
    out = refused(tamx_cli("encode", "--model", NO_MODEL, "--manifest", path, "--out", tmp_path / "r"))
    assert "is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8" in out and out.count("\n") == 1


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_manifest_is_one_line(tmp_path, text):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    refused(tamx_cli("encode", "--model", NO_MODEL, "--manifest", path, "--out", tmp_path / "r"), "holds no records")


def test_a_missing_manifest_or_a_folder_is_one_line(tmp_path):
    refused(
        tamx_cli("encode", "--model", NO_MODEL, "--manifest", tmp_path / "nope.jsonl", "--out", tmp_path / "r"),
        "cannot read manifest",
        "No such file or directory",
    )
    refused(tamx_cli("encode", "--model", NO_MODEL, "--manifest", tmp_path, "--out", tmp_path / "r"), code=2)


def test_case_twins_and_duplicates_are_refused(tmp_path):
    records = [{"id": i, "messages": _turn(PICTURE, TEXT)} for i in ("Cat", "cat", "Cat")]
    samples, failed = read_manifest(_manifest(tmp_path, records))
    assert [s.id for s in samples] == ["Cat"]
    assert "differs from 'Cat' only in case" in failed["inputs.jsonl:2"]
    assert "appears twice" in failed["inputs.jsonl:3"]


def test_a_byte_order_mark_and_integer_ids_are_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": 397133, "messages": _turn(PICTURE, TEXT)}).encode() + b"\n")
    samples, failed = read_manifest(path)
    assert failed == {} and [s.id for s in samples] == ["397133"]


def test_an_inline_id_is_checked_before_the_model_loads(tmp_path, image):
    for sample_id, expected in (("..", "starts with '.'"), ("x" * 300, "over the limit of 200")):
        args = ["--model", NO_MODEL, "--image", image, "--prompt", "Hi", "--id", sample_id, "--out", tmp_path / "r"]
        refused(tamx_cli("encode", *args), expected, code=2)


def test_bad_records_fail_alone_and_the_run_goes_on(tmp_path, image):
    records = [
        {"id": "good", "messages": _turn(PICTURE, TEXT), "answer": "a red circle"},
        {"id": "messages-string", "messages": "Describe the image."},
        {"id": "content-number", "messages": [{"role": "user", "content": 7}]},
        {"id": "item-null", "messages": _turn(PICTURE, None)},
        {"id": "also-good", "messages": _turn(PICTURE, {"type": "text", "text": "Colour?"}), "answer": "red"},
    ]
    run = tmp_path / "run"
    args = ["--model", MODEL_DIR, "--manifest", _manifest(tmp_path, records), "--out", run, "--quiet"]
    out = refused(tamx_cli("encode", *args), "3 sample(s) failed:")
    assert open_run(run).sample_ids() == ["also-good", "good"]
    assert "  item-null: messages[0].content[1] must be an object" in out


def test_max_new_tokens_past_the_model_positions_is_refused_before_encoding(tmp_path, image):
    args = [
        "--model",
        MODEL_DIR,
        "--image",
        image,
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "5000",
        "--out",
        tmp_path / "r",
    ]
    refused(tamx_cli("encode", *args), "--max-new-tokens 5000 is more than the model's max_position_embeddings (1024)")
    assert not (tmp_path / "r").exists(), "refused before the run is created"


def test_a_prompt_past_the_model_positions_is_warned_about(tmp_path, image, caplog):
    prompt = "red circle " * 600
    args = ["--model", MODEL_DIR, "--image", image, "--prompt", prompt, "--answer", "red", "--out", tmp_path / "r"]
    with caplog.at_level(logging.WARNING):
        result = tamx_cli("encode", *args, "--quiet")
    assert result.exit_code == 0, result.output
    (warning,) = [r.getMessage() for r in caplog.records if "max_position_embeddings" in r.getMessage()]
    assert "over the model's max_position_embeddings of 1024" in warning and "shorten the prompt" in warning
    assert open_run(tmp_path / "r").sample_ids() == ["shape"], "it still encodes (named after shape.png)"
    caplog.clear()
    short = ["--model", MODEL_DIR, "--image", image, "--prompt", "Hi", "--answer", "red", "--out", tmp_path / "s"]
    with caplog.at_level(logging.WARNING):
        assert tamx_cli("encode", *short, "--quiet").exit_code == 0
    assert not [r for r in caplog.records if "max_position_embeddings" in r.getMessage()]


def test_disk_full_during_encode_stops_with_one_line_and_keeps_earlier_samples(tmp_path, image):
    from .test_disk_full import fill, small_disk

    records = [{"id": name, "messages": _turn(PICTURE, TEXT), "answer": "red"} for name in ("a", "b", "c")]
    manifest = _manifest(tmp_path, records)
    with small_disk(tmp_path, "4m") as disk:
        run = disk / "run"
        first = ["--model", MODEL_DIR, "--image", image, "--prompt", "Hi", "--answer", "red", "--id", "first"]
        assert tamx_cli("encode", *first, "--out", run, "--quiet").exit_code == 0
        fill(disk)
        result = tamx_cli("encode", "--model", MODEL_DIR, "--manifest", manifest, "--out", run, "--quiet")
        out = refused(result, "no space left on device while writing sample 'a' into")
        assert "failed:" not in out
        assert open_run(run).sample_ids() == ["first"] and open_run(run).sample("first").answer_positions.size


@pytest.mark.parametrize(
    "option, value", [("--top-k", "51"), ("--top-k", "-1"), ("--max-new-tokens", "0"), ("--frames", "0")]
)
def test_encode_option_bounds_are_usage_errors(tmp_path, image, option, value):
    args = ["--model", NO_MODEL, "--image", image, "--prompt", "Hi", option, value, "--out", tmp_path / "r"]
    refused(tamx_cli("encode", *args), "is not in the range", code=2)
