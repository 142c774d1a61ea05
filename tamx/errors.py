"""Exceptions raised by tamx. Every message says what is wrong and what to do.

The command line prints any TamxError as one line and exits with status 1; anything else
that escapes a command is reported as a bug (see pipeline/errors.py).
"""

from __future__ import annotations


class TamxError(Exception):
    """Base class of every error tamx raises on purpose."""


class StoreError(TamxError):
    """The run store cannot be opened or written (missing, wrong schema, locked)."""


class SampleError(TamxError):
    """One sample is invalid or damaged; names the sample and the field at fault."""

    def __init__(self, sample_id: str, field: str, problem: str) -> None:
        self.sample_id = sample_id
        self.field = field
        self.problem = problem
        super().__init__(f"sample {shown_id(sample_id)}, field {field!r}: {problem}")

    def __reduce__(self):
        return type(self), (self.sample_id, self.field, self.problem)


class FieldError(TamxError):
    """A record built in memory has a field that breaks its rule; names the field. The store
    and the interchange turn it into a SampleError naming the sample too."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"field {field!r}: {problem}")

    def __reduce__(self):
        return type(self), (self.field, self.problem)


class DiskFullError(TamxError):
    """The disk (or the user's quota) filled up while writing; the run stops there.

    Per-sample loops let it through instead of charging it to one sample: every later
    sample would fail the same way.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"no space left on device while writing {what}; free some space (or write elsewhere) and run the "
            "command again: what was finished is kept, and nothing half-written is read as complete"
        )

    def __reduce__(self):
        return type(self), (self.what,)


def printable(text: object) -> str:
    """`text` safe to print on a terminal: every character Python does not count as printable
    (C0 and C1 controls such as ESC, which starts colour, title and hyperlink sequences; the
    bidirectional overrides and other invisible format characters; line separators; lone
    surrogates) written as its escape, as repr writes it (\\x1b, \\u202e, \\udc80).

    Everything tamx prints that comes from a run, a model or a file goes through it: ids, model
    names, token strings, messages."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown_id(sample_id: object, limit: int = 40) -> str:
    """A sample id as messages show it: quoted, and cut short when it is long."""
    text = str(sample_id)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
