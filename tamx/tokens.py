"""What a sample's tokens say, for every reader (pages, figures, eval): their decoded strings,
safe to encode and to draw, and the log-probabilities the model gave the answer's tokens."""

from __future__ import annotations

import re

import numpy as np

from .records import Sample

_SURROGATE = re.compile("[\ud800-\udfff]")


def printable_surrogates(text: str) -> str:
    """`text` with each lone surrogate (half of a character a tokenizer split) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def token_strings(sample: Sample) -> list[str]:
    """The decoded string of every input id (`#id` where the store has none); a lone surrogate (half
    of a character a tokenizer split) as U+FFFD, which every font, encoder and parser takes."""
    if sample.tokens is not None:
        return [printable_surrogates(token) for token in sample.tokens]
    return [f"#{t}" for t in sample.input_ids.tolist()]


def candidate_strings(sample: Sample) -> list[list[str]]:
    """The decoded strings of the top-k candidates at every answer step."""
    if sample.candidate_ids is None:
        return []
    if sample.candidate_tokens is not None:
        return [[printable_surrogates(token) for token in row] for row in sample.candidate_tokens]
    return [[f"#{t}" for t in row] for row in sample.candidate_ids.tolist()]


# Control characters other than tab and newline drawn as escapes (\r, \f, \x1b), which every
# font can draw (Unicode's control pictures are missing from DejaVu).
CONTROL_PICTURES = {code: repr(chr(code))[1:-1] for code in [*range(32), 127] if code not in (9, 10)}


def visible_whitespace(text: str) -> str:
    """A token string with its spaces, tabs, newlines and other control characters drawn (␣, ⇥,
    ⏎, \f, ...), so " a" and "a" differ and nothing prints as a missing glyph."""
    return text.replace(" ", "␣").replace("\t", "⇥").replace("\n", "⏎").translate(CONTROL_PICTURES)


def answer_logprobs(sample: Sample) -> np.ndarray | None:
    """log p of every answer token as the model scored it: [N] float32, or None if not known.

    Stored at encode (`Sample.answer_logprobs`); for older greedy runs it is the top candidate's,
    which is the generated token."""
    if sample.answer_logprobs is not None:
        return np.asarray(sample.answer_logprobs, np.float32)
    if sample.candidate_ids is None or sample.candidate_logprobs is None:
        return None
    answer = sample.input_ids[sample.answer_positions]
    if not np.array_equal(sample.candidate_ids[:, 0], answer):
        return None
    return sample.candidate_logprobs[:, 0]
