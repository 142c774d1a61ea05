"""Dataset loaders on tiny fixtures in each layout, the manifests, and the offline word classes."""

from __future__ import annotations

import json
import sys
import types

import cv2
import numpy as np
import pytest
from tamx.pipeline.manifests import write_manifest

from tamx.datasets import PROMPTS, load_dataset
from tamx.errors import TamxError
from tamx.pos import FUNCTION, NOUN, OTHER, Tagger, category_lemmas, lemma, word_class

from .pos_words import HAND_LABELLED


def _label(path, values):
    cv2.imwrite(str(path), np.array(values, np.uint8))


@pytest.fixture
def coco(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "image").mkdir()
    (tmp_path / "seg_label").mkdir()
    meta = {
        "images": [{"id": 42, "file_name": "COCO_val2014_000000000042.jpg"}, {"id": 7, "file_name": "x.jpg"}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 67, "name": "dining table"}],
    }
    (tmp_path / "annotations" / "instances_minival2014.json").write_text(json.dumps(meta))
    captions = {"annotations": [{"image_id": 42, "caption": "A dog. "}, {"image_id": 42, "caption": "A pup."}]}
    (tmp_path / "annotations" / "captions_val2014.json").write_text(json.dumps(captions))
    for name, values in (("000000000042", [[0, 18], [67, 18]]), ("000000000007", [[1, 1], [0, 0]])):
        _label(tmp_path / "seg_label" / f"{name}.png", values)
        cv2.imwrite(str(tmp_path / "image" / f"{name}.jpg"), np.zeros((2, 2, 3), np.uint8))
    return tmp_path


def test_coco_loader(coco):
    records = load_dataset("coco", coco)
    assert [r.id for r in records] == ["000000000007", "000000000042"]
    record = records[1]
    assert record.captions == ["A dog.", "A pup."]
    assert record.image == coco / "image" / "000000000042.jpg"
    masks = record.masks()
    assert sorted(masks) == ["dining table", "dog"], "only the categories present in the label"
    np.testing.assert_array_equal(masks["dog"], [[False, True], [False, True]])
    assert record.categories["dog"] == 18


@pytest.mark.parametrize("dataset", ["grandf", "openpsg"])
def test_anno_json_loader(tmp_path, dataset):
    (tmp_path / "imgs").mkdir()
    _label(tmp_path / "imgs" / "a_label.png", [[1, 2], [2, 0]])
    _label(tmp_path / "imgs" / "b_label.png", [[3, 3], [0, 0]])
    entries = [
        ["imgs/a.jpg", "A man rides a horse.", "imgs/a_label.png", {"man": 1, "horse": 2}],
        ["other/a.jpg", "Two cows.", "imgs/b_label.png", {"cow": 3}],
    ]
    (tmp_path / "anno.json").write_text(json.dumps(entries))
    records = load_dataset(dataset, tmp_path)
    assert [r.id for r in records] == ["a", "a-2"], "ids from image names, made unique"
    assert records[0].captions == ["A man rides a horse."]
    masks = records[0].masks()
    np.testing.assert_array_equal(masks["horse"], [[False, True], [True, False]])
    assert list(records[1].masks()) == ["cow"]


def test_folder_layout_with_objects_and_mask_folders(tmp_path):
    (tmp_path / "masks").mkdir()
    _label(tmp_path / "masks" / "cat.png", [[255, 0], [0, 0]])
    _label(tmp_path / "masks" / "sofa.png", [[0, 0], [0, 0]])
    _label(tmp_path / "l.png", [[5, 5], [0, 9]])
    entries = [
        {"id": "mine-1", "image": "i.jpg", "label": "masks", "categories": {"cat": 1, "sofa": 2}, "caption": "c"},
        {"image": "mine-1.jpg", "label": "l.png", "categories": {"bus": 5, "car": 9}, "prompt": "Describe:"},
    ]
    (tmp_path / "anno.json").write_text(json.dumps(entries))
    records = load_dataset("folder", tmp_path)
    assert [r.id for r in records] == ["mine-1", "mine-1-2"]
    assert list(records[0].masks()) == ["cat"], "an empty mask is not a present category"
    assert sorted(records[1].masks()) == ["bus", "car"] and records[1].prompt == "Describe:"


def test_loader_errors_say_what_is_missing(tmp_path):
    with pytest.raises(TamxError, match=r"anno\.json"):
        load_dataset("grandf", tmp_path)
    with pytest.raises(TamxError, match=r"instances_minival2014\.json"):
        load_dataset("coco", tmp_path)
    with pytest.raises(TamxError, match="unknown dataset"):
        load_dataset("voc", tmp_path)
    (tmp_path / "anno.json").write_text(json.dumps([["a.jpg", "x"]]))
    with pytest.raises(TamxError, match="entry 0"):
        load_dataset("folder", tmp_path)


def test_colour_label_is_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "l.png"), np.array([[[1, 2, 3]]], np.uint8))
    (tmp_path / "anno.json").write_text(json.dumps([["i.jpg", "", "l.png", {"cat": 1}]]))
    with pytest.raises(TamxError, match="grey"):
        load_dataset("folder", tmp_path)[0].masks()


def test_write_manifest_uses_the_papers_prompt(coco, tmp_path):
    out = tmp_path / "out" / "coco.jsonl"
    assert write_manifest("coco", coco, out) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["000000000007", "000000000042"]
    (turn,) = lines[1]["messages"]
    assert turn["role"] == "user"
    image, text = turn["content"]
    assert image == {"type": "image", "image": str((coco / "image" / "000000000042.jpg").resolve())}
    assert text == {"type": "text", "text": "Write a one-sentence caption for this image:"}
    assert PROMPTS["grandf"].endswith("around two sentences:") and PROMPTS["openpsg"].endswith("three sentences:")


def test_lemma_of_plural_nouns():
    cases = {
        "dogs": "dog", "buses": "bus", "boxes": "box", "benches": "bench", "horses": "horse", "skies": "sky",
        "cookies": "cookie", "knives": "knife", "gloves": "glove", "people": "person", "men": "man",
        "glasses": "glass", "tomatoes": "tomato", "shoes": "shoe", "bus": "bus", "grass": "grass", "skis": "ski",
    }  # fmt: skip
    assert {word: lemma(word) for word in cases} == cases


def test_word_classes():
    categories = frozenset(
        w for ws in category_lemmas(["dining table", "teddy bear", "building-other"]).values() for w in ws
    )
    assert [word_class(w, categories) for w in ["The", " its", "there", "could", "'s", "whose"]] == [FUNCTION] * 6
    assert [word_class(w, categories) for w in [" on", "in", "two", "is", "sitting", "parked", "quickly", "red"]] == [
        OTHER
    ] * 8
    assert [word_class(w, categories) for w in ["bears", "tables", "building", "giraffe", "Tokyo", "bed"]] == [NOUN] * 6
    assert word_class("42", categories) == OTHER and word_class(".", categories) == OTHER


def test_rules_agree_with_the_hand_labelled_list():
    tagger = Tagger("rules")
    agree = sum(tagger(word) == label for word, label in HAND_LABELLED)
    assert agree / len(HAND_LABELLED) >= 0.95, [(w, tagger(w), lab) for w, lab in HAND_LABELLED if tagger(w) != lab]


def test_nltk_tagger_errors_say_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk", None)
    with pytest.raises(TamxError, match="pip install nltk"):
        Tagger("nltk")
    fake = types.ModuleType("nltk")

    def pos_tag(words):
        raise LookupError("Resource averaged_perceptron_tagger_eng not found")

    fake.pos_tag = pos_tag
    monkeypatch.setitem(sys.modules, "nltk", fake)
    with pytest.raises(TamxError, match=r"nltk\.download"):
        Tagger("nltk")


def test_nltk_tags_map_to_classes(monkeypatch):
    fake = types.ModuleType("nltk")
    tags = {"dog": "NN", "the": "DT", "on": "IN", "Dogs": "NNS"}
    fake.pos_tag = lambda words: [(w, tags.get(w, "NN")) for w in words]
    monkeypatch.setitem(sys.modules, "nltk", fake)
    tagger = Tagger("nltk")
    assert [tagger(w) for w in [" dog", "the", " on", "Dogs."]] == [NOUN, FUNCTION, OTHER, NOUN]
