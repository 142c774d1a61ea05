"""Grouping sub-word tokens into words (the report's word view, the evaluation protocol) and finding
the same word in another tokenisation (`align_word`: two runs' answers side by side)."""

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


def _word_key(text: str) -> str:
    return "".join(c for c in text.lower() if not c.isspace() and unicodedata.category(c)[0] not in "PS")


def align_word(from_tokens: Sequence[str], word: int, to_tokens: Sequence[str]) -> list[int]:
    """Indices of the tokens of `to_tokens` that make the word matching word `word` of
    `from_tokens`: the same text (case, spaces and punctuation aside), the same occurrence.
    Tokenisations may differ; [] when the other answer has no such word. (The page does the same.)"""

    def texts(tokens: Sequence[str]) -> tuple[list[int], list[str]]:
        index = word_index(tokens)
        words = [""] * (index[-1] + 1 if index else 0)
        for token, w in zip(tokens, index):
            words[w] += token
        return index, [_word_key(w) for w in words]

    _, source = texts(from_tokens)
    if not 0 <= word < len(source):
        return []
    occurrence = source[:word].count(source[word])
    index, target = texts(to_tokens)
    matches = [w for w, key in enumerate(target) if key == source[word]]
    if occurrence >= len(matches):
        return []
    return [i for i, w in enumerate(index) if w == matches[occurrence]]
