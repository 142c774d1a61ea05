"""Bad evaluation inputs through `tamx eval`: a mask of the wrong size or a missing image fails
that sample alone; malformed anno.json and COCO annotations are one line naming the field."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tamx import create_run
from tamx.datasets import load_dataset
from tamx.errors import TamxError
from tamx.synthetic import synthetic_run_info, synthetic_sample

from .refusals import refused, tamx_cli


def _eval(run_path, data, tmp_path):
    return tamx_cli("eval", run_path, "--dataset", "folder", "--data", data, "--out", tmp_path / "scores", "--quiet")


def test_eval_baseline_scores_both_samples(eval_case, tmp_path):
    run_path, data, _ = eval_case
    result = _eval(run_path, data, tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "scores" / "summary.json").read_text())["variants"]["cam"]["samples"] == 2


@pytest.mark.parametrize("shape", [(24, 32), (48, 63), (64, 48)])
def test_a_mask_of_another_size_than_its_image_fails_that_sample(eval_case, tmp_path, shape):
    run_path, data, _ = eval_case
    cv2.imwrite(str(data / "second.png"), np.ones(shape, np.uint8))
    out = refused(_eval(run_path, data, tmp_path), "1 sample(s) failed", "second: ", f"is {shape[0]}x{shape[1]} pixels")
    assert "its image" in out and "48x64" in out and "does not resize" in out
    assert json.loads((tmp_path / "scores" / "summary.json").read_text())["variants"]["cam"]["samples"] == 1


def test_masks_of_a_mask_folder_must_agree_in_size(eval_case, tmp_path):
    run_path, data, entries = eval_case
    folder = data / "second-masks"
    folder.mkdir()
    cv2.imwrite(str(folder / "dog.png"), np.full((48, 64), 255, np.uint8))
    cv2.imwrite(str(folder / "cat.png"), np.full((40, 64), 255, np.uint8))
    entries[1].update(label="second-masks", categories={"dog": 1, "cat": 2})
    (data / "anno.json").write_text(json.dumps(entries))
    refused(_eval(run_path, data, tmp_path), "second: ", "cat.png is 40x64 pixels but its image")
    (data / "second.jpg").unlink()  # without the image, the first mask sets the size
    with pytest.raises(TamxError, match=r"cat\.png is 40x64 pixels but the mask .*dog\.png is 48x64"):
        load_dataset("folder", data)[1].masks()


def test_a_missing_or_unreadable_image_fails_that_sample(eval_case, tmp_path):
    run_path, data, _ = eval_case
    (data / "second.jpg").unlink()
    refused(_eval(run_path, data, tmp_path), "second: its image", "is missing")
    (data / "second.jpg").write_bytes(b"not a jpeg")
    refused(_eval(run_path, data, tmp_path), "second: cannot read the image")


@pytest.mark.parametrize(
    "anno, expected",
    [
        (b"[{not json", "is not valid JSON (line 1, column 3"),
        (b'[{"id": "caf\xe9"}]', "is not UTF-8 text"),
        (b"", "is not valid JSON"),
        (b'{"first": 1}', "must hold a list of entries"),
        (b"[42]", "entry 0 is not [image path, description, label path, {name: id}]"),
        (b'[{"image": "a.jpg"}]', "entry 0 lacks 'label'"),
        (b'[{"image": 5, "label": "a.png", "categories": {}}]', "the image path must be a non-empty string"),
        (b'[{"image": "a.jpg", "label": null, "categories": {}}]', "the label path must be a non-empty string"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": [1]}]', "categories must map names to label ids"),
        (
            b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": "one"}}]',
            "category id 'one' is not an integer",
        ),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": 1.5}}]', "category id 1.5 is not an integer"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": true}}]', "category id True is not an integer"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": -1}}]', "category id -1 is not an integer"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": 70000}}]', "from 0 to 65535"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {"dog": null}}]', "category id None is not an integer"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {}, "captions": [1]}]', "captions must be a list"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {}, "id": [1]}]', "the id must be a string"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {}, "prompt": 3}]', "the prompt must be a string"),
        (b'[["a.jpg", 7, "a.png", {"dog": 1}]]', "captions must be a list of strings"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {}, "id": "../x"}]', "the id holds '/'"),
        (b'[{"image": "a.jpg", "label": "a.png", "categories": {}, "id": ".."}]', "the id starts with '.'"),
    ],
)
def test_malformed_anno_json_is_one_line(eval_case, tmp_path, anno, expected):
    run_path, data, _ = eval_case
    (data / "anno.json").write_bytes(anno)
    refused(_eval(run_path, data, tmp_path), expected, "anno.json")


@pytest.fixture
def coco_case(tmp_path):
    data = tmp_path / "coco"
    for folder in ("annotations", "image", "seg_label"):
        (data / folder).mkdir(parents=True)
    (data / "annotations" / "captions_val2014.json").write_text(json.dumps({"annotations": []}))
    run = tmp_path / "run"
    create_run(run, synthetic_run_info()).write_sample(synthetic_sample("000000000001", grids=[(1, 4, 4)]))
    return run, data


@pytest.mark.parametrize(
    "instances, expected",
    [
        ({"images": [], "categories": [{"id": "x", "name": "dog"}]}, "categories[0]: the category id 'x'"),
        ({"images": [], "categories": [{"id": 2.5, "name": "dog"}]}, "the category id 2.5 is not an integer"),
        ({"images": [], "categories": [{"id": 2}]}, "categories[0]: name must be a non-empty string"),
        ({"images": [], "categories": ["dog"]}, "categories[0] must be an object"),
        ({"images": [{"id": "one"}], "categories": []}, "images[0]: the id 'one' is not a non-negative integer"),
        ({"images": [{"id": 1}]}, "must be an object with the lists 'images' and 'categories'"),
        ([1, 2], "must be an object with the lists"),
    ],
)
def test_malformed_coco_annotations_are_one_line(coco_case, tmp_path, instances, expected):
    run, data = coco_case
    (data / "annotations" / "instances_minival2014.json").write_text(json.dumps(instances))
    refused(tamx_cli("eval", run, "--dataset", "coco", "--data", data, "--quiet"), expected)


def test_coco_captions_of_the_wrong_type_are_one_line(coco_case):
    run, data = coco_case
    (data / "annotations" / "instances_minival2014.json").write_text(json.dumps({"images": [], "categories": []}))
    (data / "annotations" / "captions_val2014.json").write_text(json.dumps({"annotations": [{"caption": 5}]}))
    refused(
        tamx_cli("eval", run, "--dataset", "coco", "--data", data), "annotations[0] needs an image_id and a caption"
    )
