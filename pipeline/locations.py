"""Where a command reads or writes: a local path (or file:// URL) or an fsspec URL, checked
before any work starts, so that no stage writes a folder named "s3:" or fails half way.

A malformed URL (s3:/x, s3://, an unknown protocol) or a URL where only a local path will do
is a bad option: one line, status 2. A URL whose storage cannot be reached, or whose bucket
does not exist, is a failure: one line, status 1.
"""

from __future__ import annotations

import re

import click

from tamx.errors import TamxError

from .errors import one_line

# A protocol, a colon and not the "//" of a URL ("s3:/x", "s3:bucket/x"). A single letter is a
# Windows drive ("C:/data"), not a protocol.
_PROTOCOL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):(.*)$", re.DOTALL)
FILE_URL = "file://"


def _known_protocols() -> frozenset[str]:
    try:
        import fsspec
    except ImportError:
        return frozenset()
    return frozenset(fsspec.available_protocols())


def url_problem(text: str) -> str | None:
    """What is wrong with `text` as a URL (None: a well-formed URL, or no URL at all)."""
    match = _PROTOCOL.match(text)
    if match is None:
        return None
    protocol, rest = match.groups()
    example = f"{protocol}://BUCKET/PATH"
    if not rest.startswith("//"):
        if rest.startswith("/") or protocol.lower() in _known_protocols():
            return f"is not a URL: a URL is {example}; for a local path that begins so, write ./{text}"
        return None
    if protocol.lower() == "file":
        return None if rest.removeprefix("//").strip("/") else f"names no path: write {FILE_URL}/PATH"
    known = _known_protocols()
    if known and protocol.lower() not in known:
        return f"has an unknown protocol {protocol!r}: use one fsspec knows (s3, gs, az, ...) or a local path"
    if not rest.removeprefix("//").strip("/"):
        return f"names no bucket or path: write {example}"
    return None


def check_reachable(url: str) -> None:
    """Raise TamxError (one line naming `url`) if its storage cannot be reached or its bucket is missing.

    Walks up from `url` to the first thing that exists: on an object store the bucket must,
    elsewhere folders are created by the write. Nothing is written."""
    from tamx.store import objects_at

    objects = objects_at(url)  # StoreError (one line) when the protocol's package is missing
    fs, path = objects.fs, objects.root
    split = getattr(fs, "split_path", None)  # object stores (s3fs, gcsfs, adlfs): bucket, key, version
    while True:
        try:
            fs.info(path)
            return
        except FileNotFoundError:
            if split is not None and not split(path)[1]:
                raise TamxError(
                    f"{url}: the bucket {split(path)[0]!r} does not exist; create it first, or check the URL"
                ) from None
            parent = fs._parent(path)
            if not parent.strip("/") or parent == path:
                return  # a local-like file system: the write creates the folders
            path = parent
        except PermissionError as exc:
            raise TamxError(f"{url}: permission denied ({one_line(exc)}); check the credentials") from None
        except TamxError:
            raise
        except Exception as exc:  # each backend has its own connection errors (botocore, aiohttp, ...)
            raise TamxError(
                f"{url}: its storage cannot be reached ({type(exc).__name__}: {one_line(exc)}); check the "
                "endpoint (e.g. AWS_ENDPOINT_URL), the credentials and the network"
            ) from None


class Location(click.ParamType):
    """A path option or argument that may be an fsspec URL (`url=True`) or must be local.

    file:// URLs become local paths; a local path is checked as click.Path(exists, file_okay,
    dir_okay) checks it; a URL is checked for form, then (`url=True`) for reachability."""

    def __init__(self, *, url: bool, exists: bool = False, file_okay: bool = True, dir_okay: bool = True) -> None:
        self.url = url
        self._local = click.Path(exists=exists, file_okay=file_okay, dir_okay=dir_okay)
        self.what = "folder" if not file_okay else "file" if not dir_okay else "path"
        self.name = "directory" if not file_okay else self.what  # the metavar, as click.Path shows it

    def convert(self, value, param, ctx):
        from tamx.store import is_url, local_path

        text = str(value)
        problem = url_problem(text)
        if problem is not None:
            self.fail(f"{text!r} {problem}", param, ctx)
        if not is_url(text):
            return self._local.convert(local_path(text), param, ctx)
        if not self.url:
            self.fail(
                f"{text!r} is a URL, and this takes a local {self.what} only: give a path on this machine "
                "(copy to or from the URL with your storage's own tools)",
                param,
                ctx,
            )
        check_reachable(text)
        return text

    def shell_complete(self, ctx, param, incomplete):
        return self._local.shell_complete(ctx, param, incomplete)
