"""Plain reference of the paper's plausibility evaluation, for tests of `tamx eval --protocol paper`.

Written from the paper (Sec. 3.4, Eqs. 3, 8, 9 and Supp. E) and docs/eval.md "Protocol" and
"Protocols and thresholds", not from any implementation: explicit loops, float64, one
sample and one token at a time. Single-image samples whose grid covers the whole image, and
the variants cam (no filter) and rank-gaussian filtered ones (tests/reference.py's filter).

- Eq. 3: a token's map is min-max normalised jointly with its raw text relevance r_i, the
  n_p prompt scores and the i - 1 earlier answer scores: relu(h[p] . w[c] + b) at every
  prompt token p and at the positions that predicted the earlier answer tokens (not the one
  that predicted the token itself). The span is that of the map before the filter (normalise,
  then filter, as the authors' evaluation applies Eq. 3: docs/eval.md), so the stored filtered
  map is scaled by it, x 255, truncated to uint8.
- Supp. E: the first answer token's map is the first prompt token's map without ECI; its class
  is the greedy prediction there (the best stored LM-head row), normalised with its prompt scores.
- Eq. 8: the map resized to the mask (bilinear), binarised by OpenCV's Otsu threshold; IoU
  with the category's mask; a word scores its best token, consecutive words of one category
  once (best of them all); precision and recall of that token. A noun takes the last category
  of the record whose name has a word of the same lemma; no entry when its mask is empty.
- Eq. 9: b = the mean, over the answer's noun words, of each word's largest token threshold;
  a function word scores the mean over its tokens of the share of the token grid's cells below b.
- Means over all entries of the dataset; F1-IoU of the two means.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from tamx import open_run
from tamx.datasets import load_dataset
from tamx.pos import FUNCTION, NOUN, Tagger, category_lemmas, lemma, normalise_word
from tamx.tokens import token_strings
from tamx.words import group_words

from .reference import rank_gaussian_filter_ref


def _words(sample, tagger, record, present):
    """[(kind, category or None, answer-token indices)] of the answer."""
    strings = token_strings(sample)
    answer = [strings[p] for p in sample.answer_positions.tolist()]
    names = category_lemmas(record.categories)
    words = []
    for tokens in group_words(answer):
        text = "".join(answer[t] for t in tokens).strip()
        kind = tagger(text)
        category = None
        if kind == NOUN:
            key = lemma(normalise_word(text))
            for name, lemmas in names.items():  # the last match wins
                if key in lemmas:
                    category = name
            if category not in present:
                category = None
        words.append((kind, category, list(tokens)))
    return words


def _quantise(values, low, high):
    out = []
    for x in values:
        v = 0 if high <= low else math.floor((x - low) / (high - low) * 255.0)
        out.append(min(max(v, 0), 255))
    return np.array(out, dtype=np.uint8)


def paper_token_maps(sample, maps):
    """uint8 [N, H, W] token-grid maps of one variant under the paper's protocol."""
    hidden = sample.hidden_float32().astype(np.float64)
    ids = [int(t) for t in sample.input_ids]
    head_ids = [int(t) for t in sample.lm_head.ids]
    rows, bias = sample.lm_head.weights(sample.lm_head.ids)
    row = {t: rows[k].astype(np.float64) for k, t in enumerate(head_ids)}
    b = {t: (0.0 if bias is None else float(bias[k])) for k, t in enumerate(head_ids)}

    def score(p, c):
        return max(float(np.dot(hidden[p], row[c])) + b[c], 0.0)

    block = sample.vision_blocks[0]
    _, height, width = block.grid
    cells = list(range(block.start, block.start + height * width))
    context = [int(q) for q in sample.context_positions]
    answers = [int(p) for p in sample.answer_positions]
    eci = np.asarray(maps.eci, dtype=np.float64)
    final = np.asarray(maps.final, dtype=np.float64)
    out = np.zeros((len(answers), height, width), dtype=np.uint8)
    for i, position in enumerate(answers):
        c = ids[position]
        text = [score(q, c) for q in context] + [score(answers[j] - 1, c) for j in range(i)]
        joined = list(eci[i]) + text
        out[i] = _quantise(final[i], min(joined), max(joined)).reshape(height, width)
    # Supp. E: the first prompt token's map without ECI, its greedy class, its prompt scores
    q0 = context[0]
    greedy = max(head_ids, key=lambda t: float(np.dot(hidden[q0], row[t])) + b[t])
    cam = np.array([score(v, greedy) for v in cells])
    settings = maps.settings
    if settings["filter"] == "none":
        filtered = cam
    elif settings["filter"] == "rank-gaussian":
        filtered = np.maximum(rank_gaussian_filter_ref(cam.reshape(height, width), settings["kernel_size"]), 0.0)
    else:
        raise ValueError(f"the reference filters with rank-gaussian only, not {settings['filter']}")
    joined = list(cam) + [score(q, greedy) for q in context]
    out[0] = _quantise(np.ravel(filtered), min(joined), max(joined)).reshape(height, width)
    return out


def paper_evaluate(run_path, data_dir, variants):
    """{variant: {obj_iou, func_iou, f1_iou, precision, recall, objects, functions}} (fractions)."""
    records = {r.id: r for r in load_dataset("folder", data_dir)}
    tagger = Tagger("rules", {w for r in records.values() for ws in category_lemmas(r.categories).values() for w in ws})
    run = open_run(run_path)
    entries = {v: ([], [], [], []) for v in variants}  # iou, precision, recall, function scores
    for sample_id in run.sample_ids():
        sample = run.sample(sample_id, media=False)
        masks = records[sample_id].masks()
        size = next(iter(masks.values())).shape
        words = _words(sample, tagger, records[sample_id], set(masks))
        for variant in variants:
            grid = paper_token_maps(sample, run.maps(sample_id, variant))
            resized = [cv2.resize(g, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for g in grid]
            binary = [cv2.threshold(r, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU) for r in resized]
            ious, precisions, recalls, funcs = entries[variant]
            thresholds = []
            previous = None
            for kind, category, tokens in words:
                if kind != NOUN:
                    previous = None
                    continue
                thresholds.append(max(binary[t][0] for t in tokens))
                if category is None:
                    previous = None
                    continue
                truth = masks[category]
                best = None
                for t in tokens:
                    predicted = binary[t][1] > 0
                    hit = np.count_nonzero(predicted & truth)
                    union = np.count_nonzero(predicted | truth)
                    scored = (hit / union if union else 0.0, t, predicted, hit)
                    if best is None or scored[0] > best[0]:
                        best = scored
                iou, _, predicted, hit = best
                p = hit / np.count_nonzero(predicted) if np.count_nonzero(predicted) else 0.0
                r = hit / np.count_nonzero(truth)
                if previous == category and iou > ious[-1]:  # the same object: keep the best
                    ious[-1], precisions[-1], recalls[-1] = iou, p, r
                elif previous != category:
                    ious.append(iou)
                    precisions.append(p)
                    recalls.append(r)
                previous = category
            if thresholds:
                b = sum(thresholds) / len(thresholds)
                for kind, _, tokens in words:
                    if kind == FUNCTION:
                        funcs.append(sum(np.count_nonzero(grid[t] < b) / grid[t].size for t in tokens) / len(tokens))
    result = {}
    for variant, (ious, precisions, recalls, funcs) in entries.items():
        obj, func = float(np.mean(ious)), float(np.mean(funcs))
        result[variant] = {
            "obj_iou": obj, "func_iou": func, "f1_iou": 2 * obj * func / (obj + func),
            "precision": float(np.mean(precisions)), "recall": float(np.mean(recalls)),
            "objects": len(ious), "functions": len(funcs),
        }  # fmt: skip
    return result
