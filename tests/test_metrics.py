"""Metric functions against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from tamx import ExplainSettings, explain_sample
from tamx.metrics import (
    FunctionScore,
    ObjectScore,
    Word,
    background_fraction,
    f1,
    first_prompt_map,
    iou,
    object_groups,
    otsu,
    precision_recall,
    quantise_maps,
    resize_map,
    score_answer,
    summarise,
)
from tamx.pos import FUNCTION, NOUN, OTHER
from tamx.synthetic import synthetic_sample


def test_quantise_uses_the_span_before_the_filter_joined_with_relevance():
    final = np.array([[0.0, 0.5, 1.0]])
    before = np.array([[0.0, 0.5, 2.0]])
    # span = max(2.0, 4.0) - 0 = 4: floor(255 * [0, .125, .25]) = [0, 31, 63]
    np.testing.assert_array_equal(quantise_maps(final, before, np.array([[4.0]])), [[0, 31, 63]])
    np.testing.assert_array_equal(quantise_maps(final, before), [[0, 63, 127]])
    assert not quantise_maps(np.ones((1, 3)), np.ones((1, 3))).any(), "a constant row is all zeros"


def test_otsu_iou_precision_recall_by_hand():
    image = np.array([[100, 100], [200, 200]], np.uint8)
    threshold, foreground = otsu(image)
    assert threshold == 100.0
    np.testing.assert_array_equal(foreground, [[False, False], [True, True]])
    predicted = np.zeros((3, 3), bool)
    predicted[0, :] = True
    predicted[1, 0] = True  # 4 pixels
    truth = np.zeros((3, 3), bool)
    truth[0, 1:] = True
    truth[1, :] = True
    truth[2, 0] = True  # 6 pixels, 3 shared with predicted
    assert iou(predicted, truth) == pytest.approx(3 / 7)
    assert precision_recall(predicted, truth) == pytest.approx((3 / 4, 3 / 6))
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 0.0
    assert background_fraction(np.array([[0, 50], [100, 150]], np.uint8), 100.0) == 0.5


def test_resize_map_to_the_mask_size():
    grid = np.array([[0, 255], [255, 0]], np.uint8)
    assert resize_map(grid, (6, 4)).shape == (6, 4)
    np.testing.assert_array_equal(resize_map(grid, (2, 2)), grid)


def test_consecutive_words_of_one_category_count_once():
    words = [
        Word("A", (0,), FUNCTION),
        Word("teddy", (1,), NOUN, "teddy bear"),
        Word("bear", (2,), NOUN, "teddy bear"),
        Word("on", (3,), OTHER),
        Word("bear", (4,), NOUN, "teddy bear"),
        Word("bed", (5,), NOUN, None),
    ]
    groups = object_groups(words)
    assert [[w.tokens for w in g] for g in groups] == [[(1,), (2,)], [(4,)]]


def test_score_answer_by_hand():
    truth = np.zeros((4, 4), bool)
    truth[:2, :] = True  # top half
    maps = np.zeros((5, 4, 4), np.uint8)
    maps[1][:2, :] = 200  # "teddy": exactly the mask, Otsu threshold 0, IoU 1
    maps[1][2:, :] = 0
    maps[2][:, :2] = 200  # "bear": the left half, IoU 4 / 12
    maps[3] = 100  # "the": uniform 100
    maps[3][0, 0] = 250
    maps[4][:2, :] = 120  # "dog" (unmatched noun): threshold 0
    words = [
        Word("teddy", (1,), NOUN, "teddy bear"),
        Word("bear", (2,), NOUN, "teddy bear"),
        Word("the", (0, 3), FUNCTION),
        Word("dog", (4,), NOUN, None),
    ]
    maps[0] = 0  # first token of "the": all zero
    scores = score_answer("s", words, maps, {"teddy bear": truth})
    assert len(scores.objects) == 1
    entry = scores.objects[0]
    assert (entry.iou, entry.precision, entry.recall, entry.token) == (1.0, 1.0, 1.0, 1)
    # Noun thresholds: 0 (teddy), 0 (bear), 0 (dog) -> b = 0: nothing is below 0.
    assert scores.functions[0].threshold == 0.0 and scores.functions[0].score == 0.0


def test_func_threshold_is_the_mean_of_noun_token_thresholds():
    maps = np.zeros((3, 2, 2), np.uint8)
    maps[0] = [[100, 100], [200, 200]]  # Otsu 100
    maps[1] = [[50, 50], [60, 60]]  # Otsu 50
    maps[2] = [[0, 70], [80, 90]]  # function word: below 75 -> 2 of 4
    words = [Word("cat", (0,), NOUN, "cat"), Word("sofa", (1,), NOUN, None), Word("its", (2,), FUNCTION)]
    truth = np.array([[False, False], [True, True]])
    scores = score_answer("s", words, maps, {"cat": truth})
    assert scores.functions[0].threshold == 75.0
    assert scores.functions[0].score == 0.5
    assert scores.objects[0].iou == 1.0


def test_function_words_without_a_noun_are_counted_not_scored():
    maps = np.zeros((1, 2, 2), np.uint8)
    scores = score_answer("s", [Word("the", (0,), FUNCTION)], maps, {})
    assert scores.functions == [] and scores.no_threshold == 1


def test_dataset_means_and_f1():
    objects = [ObjectScore("a", "cat", "cat", 0.2, 0.5, 0.5, 0), ObjectScore("b", "dog", "dog", 0.4, 1.0, 0.2, 0)]
    functions = [FunctionScore("a", "the", 0.5, 10.0), FunctionScore("a", "a", 0.7, 10.0)]
    summary = summarise(objects, functions)
    assert summary.obj_iou == pytest.approx(0.3) and summary.func_iou == pytest.approx(0.6)
    assert summary.f1_iou == pytest.approx(2 * 0.3 * 0.6 / 0.9)
    assert summary.precision == pytest.approx(0.75) and summary.recall == pytest.approx(0.35)
    assert (summary.objects, summary.functions) == (2, 2)
    assert f1(0.0, 0.0) == 0.0


@pytest.mark.parametrize("filter_name", ["none", "rank-gaussian", "median"])
def test_first_prompt_map_is_the_first_prompt_token_without_eci(filter_name):
    sample = synthetic_sample("s", grids=[(1, 6, 7)], bias=True, top_k=0)
    settings = ExplainSettings(eci="relevance", filter=filter_name)
    before, after = first_prompt_map(sample, settings)
    maps = explain_sample(sample, settings)
    # The first prompt token has no earlier context, so its stored map had no ECI either.
    np.testing.assert_allclose(after, maps.prompt_maps[0], rtol=1e-5, atol=1e-6)
    assert before.min() >= 0 and before.shape == after.shape == (42,)
