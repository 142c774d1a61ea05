"""Metric functions against hand-computed cases."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tamx.pipeline.eval.stage import answer_words

from tamx import ExplainSettings, explain_sample
from tamx.errors import TamxError
from tamx.metrics import (
    PROTOCOLS,
    FunctionScore,
    ObjectScore,
    Word,
    background_fraction,
    binarise,
    f1,
    first_prompt_map,
    first_token_map,
    iou,
    normaliser_span,
    object_groups,
    otsu,
    parse_threshold,
    precision_recall,
    project_sample_maps,
    quantise_maps,
    quantise_sample_maps,
    resize_map,
    score_answer,
    summarise,
)
from tamx.pos import FUNCTION, NOUN, OTHER, Tagger, lemma
from tamx.synthetic import synthetic_sample
from tamx.tokens import token_strings


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


def _scores(sample, token_class, positions):
    """relu(h[p] . w[c] + b) at `positions`, float64, one at a time."""
    hidden = sample.hidden_float32().astype(np.float64)
    rows, bias = sample.lm_head.weights(np.array([token_class]))
    return np.array([max(hidden[p] @ rows[0] + (0.0 if bias is None else bias[0]), 0.0) for p in positions])


@pytest.fixture
def boosted():
    """A sample whose text scores rival its maps: the hidden states at every text position scaled
    up (the one before the answer most), so the normaliser's text part decides many spans."""
    sample = synthetic_sample("s", grids=[(1, 6, 7)], bias=True, top_k=0)
    start = int(sample.context_positions[0])
    sample.hidden = sample.hidden.copy()
    sample.hidden[start:] *= 3.0
    sample.hidden[int(sample.answer_positions[0]) - 1] *= 4.0
    return sample, explain_sample(sample, ExplainSettings())


def test_tamx_normaliser_is_the_stored_relevance(boosted):
    sample, maps = boosted
    low, high = normaliser_span(sample, maps.eci, PROTOCOLS["tamx"])
    joined = np.concatenate([maps.eci, maps.text_relevance, maps.answer_relevance], axis=1)
    np.testing.assert_allclose(high, joined.max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(low, joined.min(axis=1), atol=1e-7)


def _departure_positions(sample, departure, i):
    """The positions whose scores a departure adds to answer token i's normaliser."""
    answers, ids = [int(p) for p in sample.answer_positions], sample.input_ids
    if departure == "self_score":  # the score that predicted the token itself
        return [answers[i] - 1]
    if departure == "last_prompt":  # the position before the answer (for token 0 it is its own predicting score)
        return [answers[0] - 1] if i > 0 else []
    earlier = [int(q) for q in sample.context_positions] + [answers[j] - 1 for j in range(1, i + 1)]
    return [p for p in earlier if ids[p] == ids[answers[i]]]  # own_class: entries of the token's own class


@pytest.mark.parametrize("departure", ["self_score", "last_prompt", "own_class"])
def test_each_normaliser_departure_adds_exactly_its_scores(boosted, departure):
    """Switching one field on (off for self_score, on in tamx) puts exactly its scores into the span's max."""
    sample, maps = boosted
    tamx = PROTOCOLS["tamx"]
    with_it = tamx if departure == "self_score" else replace(tamx, **{departure: True})
    without = replace(tamx, self_score=False) if departure == "self_score" else tamx
    high_with = normaliser_span(sample, maps.eci, with_it)[1]
    high_without = normaliser_span(sample, maps.eci, without)[1]
    changed = 0
    for i in range(len(sample.answer_positions)):
        token_class = int(sample.input_ids[sample.answer_positions[i]])
        added = _scores(sample, token_class, _departure_positions(sample, departure, i)).max(initial=0.0)
        assert high_with[i] == pytest.approx(max(high_without[i], added), rel=1e-6)
        changed += high_with[i] > high_without[i] * (1 + 1e-6)
    assert changed, f"{departure} never decided the span on this sample"
    # ...and the quantised maps move with it
    assert not np.array_equal(
        quantise_sample_maps(sample, maps, with_it, first_token=False),
        quantise_sample_maps(sample, maps, without, first_token=False),
    )


def test_paper_first_token_is_the_greedy_class_normalised_with_its_prompt_scores(boosted):
    sample, maps = boosted
    q0, other = int(sample.context_positions[0]), int(sample.input_ids[sample.context_positions[2]])
    sample.hidden[q0] += 5.0 * sample.lm_head.weights(np.array([other]))[0][0]  # predicts another class there
    settings = ExplainSettings.from_json(maps.settings)
    hidden = sample.hidden_float32()[int(sample.context_positions[0])].astype(np.float64)
    rows, bias = sample.lm_head.weights(sample.lm_head.ids)
    greedy = int(sample.lm_head.ids[np.argmax(rows @ hidden + bias)])
    assert greedy != int(sample.input_ids[sample.context_positions[0]])  # the two rules pick other classes here
    before, after = first_prompt_map(sample, settings, greedy)
    expected = quantise_maps(after[None], before[None], _scores(sample, greedy, sample.context_positions)[None])[0]
    paper = first_token_map(sample, settings, PROTOCOLS["paper"])
    np.testing.assert_array_equal(paper, expected)
    own_before, own_after = first_prompt_map(sample, settings)
    np.testing.assert_array_equal(
        first_token_map(sample, settings), quantise_maps(own_after[None], own_before[None])[0]
    )
    assert not np.array_equal(paper, first_token_map(sample, settings))
    assert np.array_equal(quantise_sample_maps(sample, maps, PROTOCOLS["paper"])[0], paper)


def test_noun_threshold_word_max_takes_each_words_largest_token_threshold():
    maps = np.zeros((4, 2, 2), np.uint8)
    maps[0] = [[100, 100], [200, 200]]  # Otsu 100
    maps[1] = [[50, 50], [60, 60]]  # Otsu 50: the same word "teddy bear"'s second token
    maps[2] = [[20, 20], [30, 30]]  # Otsu 20: another noun
    maps[3] = [[0, 40], [70, 90]]  # function word
    words = [Word("teddybear", (0, 1), NOUN, None), Word("sofa", (2,), NOUN, None), Word("its", (3,), FUNCTION)]
    by_token = score_answer("s", words, maps, {})
    by_word = score_answer("s", words, maps, {}, noun_threshold="word-max")
    assert by_token.functions[0].threshold == pytest.approx((100 + 50 + 20) / 3)  # 56.7: 2 of 4 below
    assert by_word.functions[0].threshold == pytest.approx((100 + 20) / 2)  # 60: 2 of 4 below
    assert (by_token.functions[0].score, by_word.functions[0].score) == (0.5, 0.5)
    by_word = score_answer("s", words[1:], maps, {}, noun_threshold="word-max")
    assert by_word.functions[0].threshold == 20.0


def test_function_words_on_the_grid_count_cells_not_pixels():
    grid = np.array([[10, 200]], np.uint8)  # two cells
    maps = np.stack([np.array([[0, 0, 0, 255]], np.uint8), np.array([[10, 10, 10, 200]], np.uint8)])
    words = [Word("cat", (0,), NOUN, None), Word("the", (1,), FUNCTION)]
    on_mask = score_answer("s", words, maps, {})
    on_grid = score_answer("s", words, maps, {}, grid_maps=np.stack([grid[0], grid[0]]))
    assert on_mask.functions[0].threshold == on_grid.functions[0].threshold == 0.0
    b_words = [Word("cat", (0,), NOUN, None), Word("the", (1,), FUNCTION)]
    maps[0] = [[0, 100, 100, 255]]  # Otsu 100
    on_mask = score_answer("s", b_words, maps, {})
    on_grid = score_answer("s", b_words, maps, {}, grid_maps=np.stack([grid[0], grid[0]]))
    assert (on_mask.functions[0].score, on_grid.functions[0].score) == (0.75, 0.5)


def test_a_fixed_threshold_binarises_at_255_t():
    image = np.array([[10, 120], [130, 250]], np.uint8)
    assert binarise(image)[0] == otsu(image)[0]
    level, foreground = binarise(image, threshold=0.5)
    assert level == 127.5
    np.testing.assert_array_equal(foreground, [[False, False], [True, True]])
    seen = np.array([[True, True], [False, True]])
    np.testing.assert_array_equal(binarise(image, seen, 0.4)[1], [[False, True], [False, True]])
    assert parse_threshold("otsu") is None and parse_threshold("0.25") == 0.25
    for bad in ("0", "1", "2", "-1", "nan", "x"):
        with pytest.raises(TamxError, match="between 0 and 1"):
            parse_threshold(bad)


def test_paper_category_match_takes_the_last_and_needs_it_present():
    sample = synthetic_sample("s", grids=[(1, 4, 4)], top_k=0)
    strings = token_strings(sample)
    nouns = [w for w in answer_words(sample, Tagger("rules"), {}) if w.kind == NOUN]
    word = nouns[0].text.lower()
    categories = {"first": {lemma(word)}, "second": {lemma(word)}}
    assert strings  # the synthetic sample has token strings to group
    first = [w.category for w in answer_words(sample, Tagger("rules"), categories) if w.text == nouns[0].text]
    last = [w.category for w in answer_words(sample, Tagger("rules"), categories, {"first", "second"})
            if w.text == nouns[0].text]  # fmt: skip
    absent = [w.category for w in answer_words(sample, Tagger("rules"), categories, {"first"})
              if w.text == nouns[0].text]  # fmt: skip
    assert set(first) == {"first"} and set(last) == {"second"} and set(absent) == {None}


def _pixel_score_answer(words, maps, masks, seen, threshold, noun_threshold):
    """score_answer as it was written before it counted histograms: every token binarised per pixel."""

    def binary(t):
        return binarise(maps[t], seen, threshold)

    if noun_threshold == "token":
        nouns = [binary(t)[0] for w in words if w.kind == NOUN for t in w.tokens]
    else:
        nouns = [max(binary(t)[0] for t in w.tokens) for w in words if w.kind == NOUN]
    objects = []
    for group in object_groups(words):
        truth = masks[group[0].category] & seen
        best = max((t for w in group for t in w.tokens), key=lambda t: iou(binary(t)[1], truth))
        objects.append((iou(binary(best)[1], truth), *precision_recall(binary(best)[1], truth), best))
    b = float(np.mean(nouns))
    functions = [
        (float(np.mean([background_fraction(maps[t], b, seen) for t in w.tokens])), b)
        for w in words
        if w.kind == FUNCTION
    ]
    return objects, functions


@pytest.mark.parametrize("threshold", [None, 0.5])
@pytest.mark.parametrize("noun_threshold", ["token", "word-max"])
def test_histogram_scores_equal_the_per_pixel_scores(threshold, noun_threshold):
    """score_answer counts each map's histogram instead of binarising its pixels: the same numbers
    as per-pixel Otsu (OpenCV's), IoU, precision, recall and background fractions, bit for bit,
    also for maps whose Otsu variance ties (three values) and with unseen pixels."""
    rng = np.random.default_rng(7)
    shape = (48, 64)
    maps = [resize_map(rng.integers(0, 256, (5, 7)), shape) for _ in range(6)]
    maps += [(rng.integers(0, 3, shape) * value).astype(np.uint8) for value in (82, 42, 117)]  # Otsu ties
    maps += [np.full(shape, 9, np.uint8), rng.integers(0, 256, shape).astype(np.uint8)]
    maps = np.stack(maps)
    masks = {"dog": np.zeros(shape, bool), "cat": np.zeros(shape, bool)}
    masks["dog"][5:30, 3:20] = True
    masks["cat"][20:44, 30:60] = True
    words = [
        Word("dog", (0, 1), NOUN, "dog"), Word("a", (2,), FUNCTION), Word("cat", (6, 7), NOUN, "cat"),
        Word("cats", (8, 9), NOUN, "cat"), Word("the", (3, 4, 10), FUNCTION), Word("grass", (5,), NOUN),
    ]  # fmt: skip
    for seen in (np.ones(shape, bool), np.arange(shape[1])[None, :] < np.arange(shape[0])[:, None] + 30):
        seen = np.broadcast_to(seen, shape).copy()
        got = score_answer("s", words, maps, masks, seen, threshold, noun_threshold=noun_threshold)
        objects, functions = _pixel_score_answer(words, maps, masks, seen, threshold, noun_threshold)
        assert [(o.iou, o.precision, o.recall, o.token) for o in got.objects] == objects
        assert [(f.score, f.threshold) for f in got.functions] == functions
    # an exact tie: OpenCV's IPP kernel takes 48, OpenCV's own loop (and so the histogram's) 0
    tie = np.repeat(np.array([0, 48, 96], np.uint8), [34, 35, 34])[None]
    words = [Word("dog", (0,), NOUN, "dog"), Word("a", (0,), FUNCTION)]
    scores = score_answer("s", words, tie[None], {"dog": tie == 96})
    assert (scores.objects[0].iou, scores.functions[0].threshold) == (1.0, otsu(tie)[0]) == (1.0, 48.0)


def test_lazy_projection_equals_the_projected_array():
    """project_sample_maps(lazy=True) projects a token when read, to the same pixels as the array."""
    sample = synthetic_sample("s", grids=[(1, 6, 8)], n_answer=4, n_context=3, seed=2, media=False)
    maps = np.random.default_rng(0).integers(0, 256, (4, 48)).astype(np.uint8)
    array, seen = project_sample_maps(sample, maps, (30, 40))
    lazy, lazy_seen = project_sample_maps(sample, maps, (30, 40), lazy=True)
    assert lazy.shape == array.shape and np.array_equal(lazy_seen, seen)
    assert np.array_equal(lazy[2], array[2]) and np.array_equal(lazy[-1], array[3])
    assert np.array_equal(np.asarray(lazy), array)
