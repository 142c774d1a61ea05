"""Files the stages write beside the run store, always written aside and then renamed; at an
fsspec URL (s3://bucket/report/index.html), written aside locally and then put in one PUT.

A full disk while writing becomes a DiskFullError that names what was being written.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tamx.errors import DiskFullError, TamxError

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
# Libraries that write through Rust (safetensors) report the OS error in their own exception's text.
_NO_SPACE_TEXT = tuple(f"(os error {code})" for code in sorted(NO_SPACE))


def is_no_space(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE
    return any(text in str(exc) for text in _NO_SPACE_TEXT)


@contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn "no space left on device" (or "quota exceeded") inside the block into DiskFullError(what)."""
    try:
        yield
    except TamxError:
        raise
    except Exception as exc:
        if is_no_space(exc):
            raise DiskFullError(what) from exc
        if not isinstance(exc, OSError) and "(os error " in str(exc):
            # a library's own exception around an OS refusal (no such folder, permission): the user's to fix
            raise TamxError(f"cannot write {what}: {exc}") from exc
        raise


def joined(folder: str | os.PathLike, *parts: str) -> str | Path:
    """`folder/part/...`: a Path for a local folder (or file:// URL), a str for a URL, whose "//"
    a Path would fold into one."""
    from tamx.store import is_url, local_path

    if is_url(folder):
        return "/".join([str(folder).rstrip("/"), *parts])
    return Path(local_path(folder), *parts)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield `path.partial` to write; it replaces `path` only if the block completes. At a URL,
    a local file to write, put at `path` as one object only if the block completes."""
    from tamx.store import is_url, local_path, objects_at

    if is_url(path):
        folder, name = str(path).rsplit("/", 1)
        with writing(str(path)), tempfile.TemporaryDirectory(prefix="tamx-") as aside:
            partial = Path(aside) / name
            yield partial
            objects_at(folder).write(name, partial.read_bytes(), atomic=True)  # one PUT: whole or nothing
        return
    path = Path(local_path(path))
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


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a binary file atomically."""
    with atomic_path(path) as partial:
        partial.write_bytes(data)
