"""Which prompt tokens are context: the message texts found in the rendered chat template and
carried through the processor's placeholder expansion (torch-free; the encode stage calls it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .adapters.base import AdapterError
from .inputs import media_kind


def text_spans(prompt: str, messages: list[dict[str, Any]], include_system: bool) -> list[tuple[int, int]]:
    """Character spans of the message texts inside the rendered prompt (system text left out by default)."""
    spans = []
    cursor = 0
    for message in messages:
        for item in message["content"]:
            if media_kind(item) is not None or not item.get("text"):
                continue
            text = item["text"]
            found = prompt.find(text, cursor)
            if found < 0:
                text = text.strip()
                found = prompt.find(text, cursor) if text else -1
            if found < 0:
                raise AdapterError(
                    f"the chat template does not copy the text {item['text'][:40]!r} of a {message['role']} turn "
                    "verbatim; tamx cannot tell prompt text from scaffolding for this template"
                )
            if message["role"] != "system" or include_system:
                spans.append((found, found + len(text)))
            cursor = found + len(text)
    return spans


def shift_spans(spans: list[tuple[int, int]], replacements: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Move spans of the rendered prompt to the processor's expanded text (placeholders replaced)."""
    shifted = []
    for start, stop in spans:
        offset = 0
        for rep in replacements:
            (_rep_start, rep_stop), (_new_start, new_stop) = rep["span"], rep["new_span"]
            if rep_stop <= start:
                offset = new_stop - rep_stop
        shifted.append((start + offset, stop + offset))
    return shifted


def context_positions(
    offsets: np.ndarray, spans: list[tuple[int, int]], input_ids: np.ndarray, special_ids: frozenset[int] | set[int]
) -> np.ndarray:
    """Token positions whose characters lie inside a message text span, special tokens excluded."""
    keep = np.zeros(len(offsets), dtype=bool)
    starts, stops = offsets[:, 0], offsets[:, 1]
    for span_start, span_stop in spans:
        keep |= (stops > starts) & (starts < span_stop) & (stops > span_start)
    keep &= ~np.isin(input_ids, np.array(sorted(special_ids), dtype=np.int64))
    return np.flatnonzero(keep).astype(np.int64)
