"""Files the stages write beside the run store, always written aside and then renamed.

A full disk while writing becomes a DiskFullError that names what was being written.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tamx.errors import DiskFullError

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn "no space left on device" (or "quota exceeded") inside the block into DiskFullError(what)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise DiskFullError(what) from exc
        raise


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield `path.partial` to write; it replaces `path` only if the block completes."""
    path = Path(path)
    with writing(str(path)):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            yield partial
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
