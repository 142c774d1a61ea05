"""Faithfulness in `tamx eval`: deletion and insertion AUCs of the stored records, per variant,
word class and category, with the controls' on the same tokens (docs/faithfulness.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from tamx.errors import SampleError

HOW = "no faithfulness records: run `tamx faithfulness RUN --model MODEL --dataset NAME --data DIR` first"
# (column, record curve): the AUCs eval reports
COLUMNS = (
    ("deletion_auc", "deletion"),
    ("insertion_auc", "insertion"),
    ("random_deletion_auc", "random_deletion"),
    ("random_insertion_auc", "random_insertion"),
    ("mask_deletion_auc", "mask_deletion"),
    ("mask_insertion_auc", "mask_insertion"),
    ("deletion_auc_norm", "deletion_norm"),
    ("insertion_auc_norm", "insertion_norm"),
    ("random_deletion_auc_norm", "random_deletion_norm"),
    ("random_insertion_auc_norm", "random_insertion_norm"),
)


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _row(entries: list[dict[str, float]]) -> dict[str, Any]:
    row: dict[str, Any] = {"tokens": len(entries)}
    for column, _ in COLUMNS:
        row[column] = _mean([e[column] for e in entries if column in e])
    if row["deletion_auc"] is not None and row["insertion_auc"] is not None:
        row["difference"] = row["insertion_auc"] - row["deletion_auc"]
    if row["random_deletion_auc"] is not None and row["random_insertion_auc"] is not None:
        row["random_difference"] = row["random_insertion_auc"] - row["random_deletion_auc"]
    return row


def token_entries(run: Any, sample_id: str, variant: str, groups: dict[int, tuple[str, str]]) -> list[dict[str, Any]]:
    """One entry per explained token of a stored record: its AUCs, word class and category
    (`groups`: answer-token index -> (word class, category))."""
    record = run.faithfulness(sample_id, variant)
    aucs = record.aucs()
    out = []
    for row, token in enumerate(record.tokens.tolist()):
        word_class, category = groups.get(token, ("other", ""))
        entry: dict[str, Any] = {"sample": sample_id, "token": token, "word_class": word_class, "category": category}
        for column, name in COLUMNS:
            if name in aucs:
                entry[column] = float(aucs[name][row])
        out.append(entry)
    return out


def summarise_faithfulness(
    run: Any, sample_ids: Sequence[str], groups: dict[str, dict[int, tuple[str, str]]], variants: Sequence[str] | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """({variant: {overall AUCs, per_word_class, per_category}}, every token's entry) over the
    samples that have records; ({}, []) when none has."""
    entries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample_id in sample_ids:
        try:
            stored = run.faithfulness_variants(sample_id)
        except SampleError:
            continue
        for variant in stored:
            if variants is None or variant in variants:
                for entry in token_entries(run, sample_id, variant, groups.get(sample_id, {})):
                    entries[variant].append({"variant": variant, **entry})
    summary = {}
    for variant, rows in sorted(entries.items()):
        by_class, by_category = defaultdict(list), defaultdict(list)
        for e in rows:
            by_class[e["word_class"]].append(e)
            if e["category"]:
                by_category[e["category"]].append(e)
        summary[variant] = {
            **_row(rows),
            "samples": len({e["sample"] for e in rows}),
            "per_word_class": {k: _row(v) for k, v in sorted(by_class.items())},
            "per_category": {k: _row(v) for k, v in sorted(by_category.items())},
        }
    return summary, [e for v in sorted(entries) for e in entries[v]]


def _cell(value: float | None) -> str:
    return f"{value:>7.3f}" if value is not None else f"{'-':>7}"


def format_faithfulness(summary: dict[str, Any]) -> str:
    """The terminal table: per variant and word class, deletion and insertion AUC (lower / higher is
    more faithful), their difference, the random and mask controls on the same tokens, and the
    variant's method and layer ("tam@-8", "attention"), as in the plausibility table."""
    if not summary:
        return HOW
    header = (
        f"{'variant':<14} {'word class':<12} {'tokens':>6} {'del':>7} {'ins':>7} {'ins-del':>7} "
        f"{'rnd del':>7} {'rnd ins':>7} {'mask del':>8} {'mask ins':>8} method"
    )
    lines = ["faithfulness (AUC of p(token) over the fraction of cells perturbed)", header, "-" * len(header)]
    for variant, s in summary.items():
        for name, row in [("all", s), *s["per_word_class"].items()]:
            lines.append(
                f"{variant:<14} {name:<12} {row['tokens']:>6} {_cell(row['deletion_auc'])} "
                f"{_cell(row['insertion_auc'])} {_cell(row.get('difference'))} "
                f"{_cell(row['random_deletion_auc'])} {_cell(row['random_insertion_auc'])} "
                f"{_cell(row['mask_deletion_auc']):>8} {_cell(row['mask_insertion_auc']):>8} {s.get('method', '')}"
            )
    lines.append("faithful: del below rnd del and ins above rnd ins; mask: the ground-truth mask as the map")
    return "\n".join(lines)
