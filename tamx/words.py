"""Grouping sub-word tokens into words (the report's word view and the evaluation protocol)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS"


def starts_word(token: str, previous: str | None) -> bool:
    """A token starts a new word at a leading space or punctuation, or right after punctuation."""
    if previous is None or not token:
        return True
    first = token[0]
    if first.isspace() or _is_punctuation(first):
        return True
    stripped = previous.strip()
    return bool(stripped) and all(_is_punctuation(c) for c in stripped)


def word_index(tokens: Sequence[str]) -> list[int]:
    """For every token, the index of the word it belongs to (0, 0, 1, 2, 2, ...)."""
    index, result, previous = -1, [], None
    for token in tokens:
        if starts_word(token, previous):
            index += 1
        result.append(max(index, 0))
        previous = token
    return result


def group_words(tokens: Sequence[str]) -> list[list[int]]:
    """Token indices of each word, in order."""
    words: list[list[int]] = []
    for position, word in enumerate(word_index(tokens)):
        if word == len(words):
            words.append([])
        words[word].append(position)
    return words
