"""Phrase and sentence maps: one map for a span of answer tokens (docs/method.md "Spans").

A span is answer tokens `start` to `stop - 1` (Python's half-open convention; `tamx render
--tokens 3-5` names tokens 3, 4 and 5, that is the span (3, 6)). Its map aggregates the token
maps cell by cell, over the same V cells:

- "mean": the plain mean of the token maps, (1/k) sum_i A_i;
- "weighted": sum_i w_i A_i / sum_i w_i with w_i = sum_v max(A_i[v], 0), each token's total
  positive activation, so tokens that point at nothing (function words, punctuation) count
  little and a phrase's map is led by its grounded words. Where every w_i is 0, the mean.

`vis_templates/report.js` computes the same thing on a page (from its 8-bit maps).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import TamxError

SPAN_RULES = ("mean", "weighted")
DEFAULT_SPAN_RULE = "mean"


def span_weights(maps: np.ndarray) -> np.ndarray:
    """The "weighted" rule's w_i of every row of `maps` [k, V]: its total positive activation."""
    rows = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    return np.clip(rows, 0, None).sum(axis=1)


def span_map(maps: np.ndarray, start: int, stop: int, rule: str = DEFAULT_SPAN_RULE) -> np.ndarray:
    """The map [V] (float32) of rows start..stop-1 of the token maps `maps` [N, V] by `rule`."""
    if rule not in SPAN_RULES:
        raise TamxError(f"unknown span rule {rule!r}: use one of {', '.join(SPAN_RULES)}")
    n = len(maps)
    if not (0 <= start < stop <= n):
        raise TamxError(f"span {start}..{stop - 1} is not within the answer tokens 0..{n - 1}")
    rows = np.asarray(maps[start:stop], dtype=np.float64)
    weights = span_weights(rows) if rule == "weighted" else np.ones(len(rows))
    if weights.sum() <= 0:
        weights = np.ones(len(rows))
    return (weights @ rows / weights.sum()).astype(np.float32)


def parse_tokens(text: str) -> list[int | tuple[int, int]]:
    """`--tokens`: comma-separated indices and inclusive ranges ("0,3-5") as ints and half-open
    (start, stop) spans; ValueError with one line where an item is neither."""
    chosen: list[int | tuple[int, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        first, dash, last = item.partition("-")
        if not dash:
            if not first.isdigit():
                raise ValueError(f"{item!r} is not an integer or a range like 3-5")
            chosen.append(int(first))
            continue
        if not (first.strip().isdigit() and last.strip().isdigit()):
            raise ValueError(f"{item!r} is not a token range: write FIRST-LAST, as in 3-5")
        low, high = int(first), int(last)
        if high < low:
            raise ValueError(f"range {item!r} ends before it starts: write FIRST-LAST with FIRST <= LAST")
        chosen.append(int(low) if low == high else (low, high + 1))
    return chosen


def token_label(item: int | tuple[int, int]) -> str:
    """How a chosen token or span is named in file names: 003 or 003-005."""
    if isinstance(item, tuple):
        return f"{item[0]:03d}-{item[1] - 1:03d}"
    return f"{item:03d}"


def span_members(items: Sequence[int | tuple[int, int]]) -> list[int]:
    """Every answer token an item list names (for range checks)."""
    out: list[int] = []
    for item in items:
        out.extend(range(*item) if isinstance(item, tuple) else [item])
    return out
