"""The one progress helper of the command line: a bar with ETA on a terminal's stderr, or nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click

from tamx.errors import printable

T = TypeVar("T")


def progress(items: Iterable[T], label: str, total: int | None = None, quiet: bool = False) -> Iterator[T]:
    """Yield `items`, drawing a progress bar with ETA unless `quiet` or stderr is not a terminal."""
    # Piped or redirected, click draws no bar but still writes its label: a bare "explain" line.
    if quiet or not sys.stderr.isatty():
        yield from items
        return
    with click.progressbar(
        items,
        length=total,
        label=label,
        file=sys.stderr,
        show_eta=True,
        show_pos=True,
        item_show_func=lambda item: printable(item) if isinstance(item, str) else None,
    ) as bar:
        yield from bar
