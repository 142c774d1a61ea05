"""Score every stored variant of a run against a dataset's masks; write CSV and JSON."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tamx import defaults, open_run
from tamx.captions import CaptionScores, score_captions
from tamx.datasets import EvalImage, category_names, load_dataset
from tamx.eci import ECI_WEIGHTINGS
from tamx.errors import TamxError
from tamx.eval_metrics import EVAL_METRICS, MapContext, score_metrics
from tamx.methods import method_layer
from tamx.metrics import (
    PROTOCOLS,
    FunctionScore,
    ObjectScore,
    Protocol,
    Summary,
    Word,
    f1,
    match_category,
    project_sample_maps,
    quantise_sample_maps,
    summarise,
)
from tamx.pointing import PointScore, PointSummary, read_word_classes, summarise_points
from tamx.pos import NOUN, Tagger, category_lemmas, lemma, normalise_word
from tamx.records import Sample
from tamx.tokens import token_strings
from tamx.words import group_words

from ..files import atomic_path, joined, write_text
from ..outcomes import Outcome, StageReport
from .faithfulness import COLUMNS as FAITHFULNESS_COLUMNS
from .faithfulness import summarise_faithfulness

log = logging.getLogger(__name__)

# Table order: the baselines and ablations of the paper's Tables 1-3, then anything else.
VARIANT_ORDER = ("cam", "eci", "eci-mean", "rank-gaussian", "median", "gaussian", "adaptive-median", "tam")


@dataclass(kw_only=True)
class EvalResult(StageReport):
    """Scores of every variant over the samples the run and the dataset share; the sample ids
    scored (done) and failed (sample id -> reason). entries: metric (tamx.eval_metrics.EVAL_METRICS)
    -> variant -> its entries of every sample; objects, functions and points: the IoU and
    pointing entries of every word, for the breakdowns."""

    dataset: str
    settings: dict[str, Any]
    summaries: dict[str, Summary] = field(default_factory=dict)
    entries: dict[str, dict[str, list[Any]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    variant_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    objects: dict[str, list[ObjectScore]] = field(default_factory=lambda: defaultdict(list))
    functions: dict[str, list[FunctionScore]] = field(default_factory=lambda: defaultdict(list))
    points: dict[str, list[PointScore]] = field(default_factory=lambda: defaultdict(list))
    captions: CaptionScores = field(default_factory=CaptionScores)
    no_threshold: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    not_in_dataset: list[str] = field(default_factory=list)
    not_in_run: int = 0
    faithfulness: dict[str, Any] = field(default_factory=dict)  # pipeline/eval/faithfulness.py
    faithfulness_entries: list[dict[str, Any]] = field(default_factory=list)

    def variants(self) -> list[str]:
        """Variant names in table order."""
        known = [v for v in VARIANT_ORDER if v in self.summaries]
        return known + sorted(v for v in self.summaries if v not in VARIANT_ORDER)

    def per_class(self, variant: str) -> list[dict[str, Any]]:
        """Obj-IoU, precision and recall per category (means over its entries)."""
        rows: dict[str, list[ObjectScore]] = defaultdict(list)
        for entry in self.objects[variant]:
            rows[entry.category].append(entry)
        return [
            {
                "variant": variant,
                "category": name,
                "count": len(entries),
                "obj_iou": float(np.mean([e.iou for e in entries])),
                "precision": float(np.mean([e.precision for e in entries])),
                "recall": float(np.mean([e.recall for e in entries])),
            }
            for name, entries in sorted(rows.items())
        ]

    def columns(self, variant: str) -> dict[str, Any]:
        """The summary.csv columns of every registered metric for a variant."""
        return {
            k: v
            for name, metric in EVAL_METRICS.items()
            for k, v in metric.columns(self.entries[name][variant]).items()
        }

    def pointing(self, variant: str) -> PointSummary:
        """Pointing accuracy and chance over every object word of a variant."""
        return summarise_points(self.points[variant])

    def per_word_class(self, variant: str) -> list[dict[str, Any]]:
        """Per word class (the dataset's word_classes.json, else "object"): Obj-IoU, F1-IoU with the
        Func-IoU of all function words, pointing and its chance."""
        func = self.summaries[variant].func_iou
        groups: dict[str, list[tuple[ObjectScore, PointScore]]] = defaultdict(list)
        for o, p in zip(self.objects[variant], self.points[variant]):  # one PointScore per ObjectScore
            groups[p.word_class].append((o, p))
        rows = []
        for name, pairs in groups.items():
            obj = float(np.mean([o.iou for o, _ in pairs]))
            summary = summarise_points([p for _, p in pairs])
            rows.append(
                {"variant": variant, "word_class": name, "count": summary.count, "obj_iou": obj,
                 "f1_iou": f1(obj, func), "pointing": summary.pointing, "chance": summary.chance}
            )  # fmt: skip
        return rows

    def per_word(self, variant: str) -> list[dict[str, Any]]:
        """Mean score per word (its lemma, lower case) and kind: Obj-IoU for nouns, Func-IoU for function words."""
        rows: dict[tuple[str, str], list[float]] = defaultdict(list)
        for o in self.objects[variant]:
            rows[("noun", lemma(normalise_word(o.words)))].append(o.iou)
        for f in self.functions[variant]:
            rows[("function", normalise_word(f.word))].append(f.score)
        return [
            {"variant": variant, "kind": kind, "word": word, "count": len(v), "score": float(np.mean(v))}
            for (kind, word), v in sorted(rows.items(), key=lambda item: (item[0][0], -len(item[1]), item[0][1]))
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "settings": self.settings,
            "variants": {
                v: {
                    **{k: x for n, m in EVAL_METRICS.items() for k, x in m.summary_json(self.entries[n][v]).items()},
                    "samples": self.samples[v],
                    "settings": self.variant_settings[v],
                }
                for v in self.variants()
            },
            "per_word_class": {v: self.per_word_class(v) for v in self.variants()},
            "captions": self.captions.to_json(),
            "faithfulness": self.faithfulness,
            "per_class": {v: self.per_class(v) for v in self.variants()},
            "per_word": {v: self.per_word(v) for v in self.variants()},
            "function_words_without_threshold": dict(self.no_threshold),
            "samples_not_in_dataset": self.not_in_dataset,
            "records_not_in_run": self.not_in_run,
            "failed": self.failed,
        }


def answer_words(
    sample: Sample, tagger: Tagger, categories: dict[str, set[str]], present: set[str] | None = None
) -> list[Word]:
    """The answer's words with their classes and matched categories (answer-token indices).

    With `present`, a noun takes the last matching category of `categories` (the authors'
    rule) and is unmatched when that one is not in `present`; without it, the first."""
    strings = token_strings(sample)
    answer = [strings[p] for p in sample.answer_positions.tolist()]
    words = []
    for tokens in group_words(answer):
        text = "".join(answer[t] for t in tokens).strip()
        kind = tagger(text)
        if kind != NOUN:
            category = None
        elif present is None:
            category = match_category(normalise_word(text), categories)
        else:
            category = match_category(normalise_word(text), dict(reversed(categories.items())))
            category = category if category in present else None
        words.append(Word(text=text, tokens=tuple(tokens), kind=kind, category=category))
    return words


def _picture_size(sample: Sample) -> tuple[int, int]:
    """(H, W) to score function words on when the record has no mask: the image's pixels, else its grid."""
    if not sample.vision_blocks:
        raise TamxError(f"sample {sample.id!r}: eval scores samples with one image, this one has none")
    first = sample.vision_blocks[0]
    return (first.image_size[1], first.image_size[0]) if first.image_size else first.grid[1:]


def _score_sample(
    run,
    record: EvalImage,
    sample_id: str,
    variants: Sequence[str] | None,
    tagger: Tagger,
    first_token: bool,
    classes: dict[str, str],
    protocol: Protocol = PROTOCOLS["tamx"],
    threshold: float | None = None,
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Every registered metric's entries (tamx.eval_metrics) and the settings of each chosen variant."""
    sample = run.sample(sample_id, media=False)
    if not record.image.is_file():
        raise TamxError(f"its image {record.image} is missing: eval needs it to check that the masks have its size")
    masks = record.masks()
    size = next(iter(masks.values())).shape if masks else _picture_size(sample)
    if protocol.category_match == "first":
        categories = {name: lemmas for name, lemmas in category_lemmas(record.categories).items() if name in masks}
        words = answer_words(sample, tagger, categories)
    else:  # the last matching category of the record; no entry when it is absent from the image
        words = answer_words(sample, tagger, category_lemmas(record.categories), set(masks))
    stored = run.variants(sample_id)
    chosen = [v for v in stored if variants is None or v in variants]
    scored = {}
    for variant in chosen:
        maps = run.maps(sample_id, variant)  # answer maps only: deferred ones are not needed
        quantised = quantise_sample_maps(sample, maps, protocol, first_token)
        # maps through their grids' boxes onto the mask's pixels, each when a metric first reads it
        # (the tokens scored); unseen pixels are not scored
        projected, seen = project_sample_maps(sample, quantised, size, lazy=True)
        context = MapContext(sample_id, sample, words, quantised, projected, seen, masks, classes, protocol, threshold)
        scored[variant] = (score_metrics(context), maps.settings)
    return scored


def evaluate_run(
    run_path: str | os.PathLike,
    dataset: str,
    data_dir: str | os.PathLike,
    variants: Sequence[str] | None = None,
    tagger: str = "rules",
    first_token: bool = True,
    sample_ids: Sequence[str] | None = None,
    wrap: Callable[[Iterator[str], int], Iterator[str]] | None = None,
    protocol: str | Protocol = "tamx",
    threshold: float | None = None,
) -> EvalResult:
    """Score the variants (default: all stored) of every run sample that has a dataset record.

    Samples match records by id (the ids `write_manifest` gives). A sample that cannot be
    scored is reported in `failed` and the others go on. protocol: "tamx", "paper" or a
    `tamx.metrics.Protocol` (docs/eval.md "Protocols"); threshold: None for Otsu, else a fixed
    threshold in (0, 1) on the normalised map scale.
    """
    protocol = Protocol.named(protocol) if isinstance(protocol, str) else protocol
    records = {r.id: r for r in load_dataset(dataset, data_dir)}
    word_tagger = Tagger(
        tagger, {w for ws in category_lemmas(category_names(list(records.values()))).values() for w in ws}
    )
    run = open_run(run_path)
    ids = run.sample_ids() if sample_ids is None else list(sample_ids)
    result = EvalResult(
        dataset=dataset,
        settings={"tagger": tagger, "first_token_substitution": first_token, "protocol": protocol.name,
                  "threshold": "otsu" if threshold is None else threshold},
    )  # fmt: skip
    result.not_in_dataset = [s for s in ids if s not in records]
    result.not_in_run = len(set(records) - set(run.sample_ids()))
    if result.not_in_dataset:
        log.warning(
            "%d sample(s) of %s have no %s record (ids differ): skipped", len(result.not_in_dataset), run_path, dataset
        )
    shared = [s for s in ids if s in records]
    if not shared:
        raise TamxError(
            f"no sample of {run_path} has an id of the {dataset} records in {data_dir}; encode the manifest "
            "that write_manifest writes for this dataset so the ids match"
        )
    classes = read_word_classes(data_dir)
    names = iter(shared)
    for sample_id in wrap(names, len(shared)) if wrap else names:
        try:
            scored = _score_sample(
                run, records[sample_id], sample_id, variants, word_tagger, first_token, classes, protocol, threshold
            )
        except TamxError as exc:
            result.add(Outcome.failed(sample_id, str(exc)))
            continue
        result.add(Outcome.done(sample_id))
        for variant, (entries, settings) in scored.items():
            for name, entry in entries.items():
                result.entries[name][variant].append(entry)
            scores, points = entries["iou"], entries["pointing"]
            result.points[variant].extend(points)
            result.objects[variant].extend(scores.objects)
            result.functions[variant].extend(scores.functions)
            result.no_threshold[variant] += scores.no_threshold
            result.samples[variant] = result.samples.get(variant, 0) + 1
            result.variant_settings.setdefault(variant, settings)
    for variant in result.samples:
        result.summaries[variant] = summarise(result.objects[variant], result.functions[variant])
    if variants is not None:
        absent = [v for v in variants if v not in result.summaries]
        if absent:
            raise TamxError(f"variant(s) {', '.join(absent)} are not stored for these samples; run `tamx explain`")
    result.captions = run_captions(run, [s for s in shared if s not in result.failed], records)
    scored = [s for s in shared if s not in result.failed]
    groups = {s: _token_groups(run, records[s], s, word_tagger, classes) for s in scored}
    result.faithfulness, result.faithfulness_entries = summarise_faithfulness(run, scored, groups, variants)
    for variant, entry in result.faithfulness.items():  # labelled as in the plausibility table
        if variant in result.variant_settings:
            entry["method"] = method_label(result.variant_settings[variant])
    return result


def _token_groups(run, record: EvalImage, sample_id: str, tagger: Tagger, classes: dict[str, str]) -> dict[int, tuple]:
    """answer-token index -> (word class, category) for the faithfulness rows: a matched noun's class
    from the dataset's word_classes.json (else "noun"), another word's from the tagger."""
    sample = run.sample(sample_id, media=False)
    categories = category_lemmas(record.categories)
    groups = {}
    for word in answer_words(sample, tagger, categories):
        name = classes.get(word.category, word.kind) if word.category else word.kind
        for token in word.tokens:
            groups[token] = (name, word.category or "")
    return groups


def run_captions(run, sample_ids: Sequence[str], records: dict[str, EvalImage]) -> CaptionScores:
    """ROUGE-L, CIDEr-D and METEOR of the generated answers against the records' captions
    (teacher-forced answers are the given text, so they are counted and left out)."""
    answers, forced = {}, 0
    for sample_id in sample_ids:
        meta = run.sample_attrs(sample_id).get("meta", {})
        if meta.get("mode") == "teacher-forced":
            forced += 1
        elif meta.get("answer") is not None:
            answers[sample_id] = meta["answer"]
    return score_captions(answers, {i: records[i].captions for i in answers}, teacher_forced=forced)


def method_label(settings: dict[str, Any]) -> str:
    """The map method and layer of a variant's settings: "tam@-1", "tam@-8", "attention",
    "gradient@-2" (the layer Grad-CAM was recorded at), ..."""
    method, layer = method_layer(settings)
    return method if layer is None else f"{method}@{layer}"


def _settings_label(settings: dict[str, Any]) -> tuple[str, str]:
    weighting = ECI_WEIGHTINGS.get(settings.get("eci", ""))
    eci = "?" if weighting is None else weighting.label
    if settings.get("method", "tam") != "tam":
        eci = "-"  # the baselines have no ECI
    name = settings.get("filter", "?")
    filt = "-" if name == "none" else f"{name} k{settings.get('kernel_size', defaults.KERNEL_SIZE)}"
    return eci, filt


def format_table(result: EvalResult) -> str:
    """The paper-style table (percent): variant, ECI, filter, Obj-IoU, Func-IoU, F1-IoU, precision,
    recall, pointing, counts, and the map method with its layer (tam@-1, tam@-8, attention, ...)."""
    header = (
        f"{'variant':<18} {'ECI':<5} {'filter':<20} {'samples':>7} {'Obj-IoU':>8} {'Func-IoU':>9} "
        f"{'F1-IoU':>7} {'Prec.':>6} {'Recall':>6} {'Point':>6} {'objects':>7} {'func.':>6} method"
    )
    threshold = result.settings.get("threshold", "otsu")
    title = (
        f"{result.dataset}: protocol {result.settings.get('protocol', 'tamx')}, threshold "
        f"{'Otsu' if threshold == 'otsu' else threshold}"
    )
    lines = [title, header, "-" * len(header)]
    for variant in result.variants():
        s = result.summaries[variant]
        eci, filt = _settings_label(result.variant_settings[variant])
        method = method_label(result.variant_settings[variant])
        lines.append(
            f"{variant:<18} {eci:<5} {filt:<20} {result.samples[variant]:>7} {100 * s.obj_iou:>8.2f} "
            f"{100 * s.func_iou:>9.2f} {100 * s.f1_iou:>7.2f} {100 * s.precision:>6.2f} {100 * s.recall:>6.2f} "
            f"{result.pointing(variant).pointing:>6.3f} {s.objects:>7} {s.functions:>6} {method}"
        )
    chance = summarise_points([p for v in result.variants()[:1] for p in result.points[v]]).chance
    lines.append(f"Point: the map's peak cell on the object (pointing accuracy); chance {chance:.3f}")
    return "\n".join(lines)


def format_class_table(result: EvalResult) -> str:
    """Per word class: Obj-IoU and F1-IoU (percent), pointing accuracy and chance, object words."""
    header = f"{'variant':<18} {'word class':<12} {'Obj-IoU':>8} {'F1-IoU':>7} {'Point':>6} {'chance':>6} {'words':>6}"
    lines = [header, "-" * len(header)]
    for variant in result.variants():
        for row in result.per_word_class(variant):
            lines.append(
                f"{variant:<18} {row['word_class']:<12} {100 * row['obj_iou']:>8.2f} {100 * row['f1_iou']:>7.2f} "
                f"{row['pointing']:>6.3f} {row['chance']:>6.3f} {row['count']:>6}"
            )
    return "\n".join(lines)


def _write_csv(path: Path | str, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    with atomic_path(path) as partial, partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def write_results(result: EvalResult, out_dir: str | os.PathLike) -> dict[str, Path | str]:
    """Write summary.csv, summary.json, per_class.csv, per_word.csv, per_word_class.csv, entries.csv and
    captions.csv to out_dir (a folder or an fsspec URL)."""
    variants = result.variants()
    summary_rows = []
    for v in variants:
        eci, filt = _settings_label(result.variant_settings[v])
        summary_rows.append(
            {"variant": v, "eci": eci, "filter": filt, "samples": result.samples[v]} | result.columns(v)
        )
    paths = {
        name: joined(out_dir, name)
        for name in (
            "summary.csv", "summary.json", "per_class.csv", "per_word.csv", "per_word_class.csv", "entries.csv",
            "captions.csv", "faithfulness.csv",
        )
    }  # fmt: skip
    _write_csv(paths["summary.csv"], summary_rows, list(summary_rows[0]) if summary_rows else ["variant"])
    write_text(paths["summary.json"], json.dumps(result.to_json(), indent=2))
    _write_csv(
        paths["per_class.csv"],
        [row for v in variants for row in result.per_class(v)],
        ["variant", "category", "count", "obj_iou", "precision", "recall"],
    )
    _write_csv(
        paths["per_word.csv"],
        [row for v in variants for row in result.per_word(v)],
        ["variant", "kind", "word", "count", "score"],
    )
    _write_csv(
        paths["per_word_class.csv"],
        [row for v in variants for row in result.per_word_class(v)],
        ["variant", "word_class", "count", "obj_iou", "f1_iou", "pointing", "chance"],
    )
    _write_csv(
        paths["captions.csv"],
        [{"sample": i, **scores} for i, scores in result.captions.per_sample.items()],
        ["sample", "rouge_l", "cider", "meteor"],
    )
    _write_csv(
        paths["faithfulness.csv"],
        result.faithfulness_entries,
        ["variant", "sample", "token", "word_class", "category"] + [c for c, _ in FAITHFULNESS_COLUMNS],
    )
    entries = [
        {"variant": v, "sample": o.sample, "kind": "noun", "words": o.words, "category": o.category, "score": o.iou,
         "precision": o.precision, "recall": o.recall, "threshold": "", "word_class": p.word_class,
         "pointing": p.hit}
        for v in variants for o, p in zip(result.objects[v], result.points[v])
    ] + [
        {"variant": v, "sample": f.sample, "kind": "function", "words": f.word, "category": "", "score": f.score,
         "precision": "", "recall": "", "threshold": f.threshold, "word_class": "", "pointing": ""}
        for v in variants for f in result.functions[v]
    ]  # fmt: skip
    _write_csv(
        paths["entries.csv"],
        entries,
        ["variant", "sample", "kind", "words", "category", "score", "precision", "recall", "threshold", "word_class",
         "pointing"],
    )  # fmt: skip
    return paths
