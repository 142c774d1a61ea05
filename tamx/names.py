"""The names a run store gives its folders: the rule every sample id and variant name follows."""

from __future__ import annotations

import re

from .errors import SampleError, TamxError, shown_id

ID_MAX_LENGTH = 200
ID_RULE = (
    "letters, digits, '_', '.' and '-', at most 200 characters, starting with a letter, digit or '_' "
    "and not ending with '.'"
)
_ID_START = re.compile(r"[A-Za-z0-9_]")
_ID_CHAR = re.compile(r"[A-Za-z0-9_.\-]")
# Device names Windows reserves (with any extension).
_RESERVED_ID = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)


def name_problem(name: object, portable: bool = True) -> str | None:
    """Why `name` cannot name a folder of the store (a sample id, a variant), or None if it can.

    `portable` also refuses what only some systems refuse (a trailing '.', Windows device
    names): new names are checked so, names already stored only for safety, so that runs
    written before this rule stay readable.
    """
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > ID_MAX_LENGTH:
        return f"is {len(name)} characters long, over the limit of {ID_MAX_LENGTH}"
    bad = sorted({c for c in name if not _ID_CHAR.fullmatch(c)})
    if bad:
        return f"holds {', '.join(repr(c) for c in bad)}"
    if not _ID_START.fullmatch(name[0]):
        return f"starts with {name[0]!r}"
    if name.lower() == "zarr.json":
        return "is a reserved name (the store's own metadata file)"
    if portable and name.endswith("."):
        return "ends with '.'"
    if portable and _RESERVED_ID.fullmatch(name):
        return "is a reserved name (a device on Windows)"
    return None


def check_name(name: object, what: str, portable: bool = True) -> str:
    """Return `name` if it can name a folder of the store, else raise TamxError naming the rule."""
    problem = name_problem(name, portable)
    if problem is not None:
        raise TamxError(f"the {what} {shown_id(name)} {problem}; {what}s use {ID_RULE}")
    return name


def check_sample_id(sample_id: str, portable: bool = False) -> str:
    """Return `sample_id` if it can name a folder of the store, else raise SampleError naming the rule
    (`portable`: as a new id, see `name_problem`)."""
    problem = name_problem(sample_id, portable)
    if problem is not None:
        raise SampleError(str(sample_id), "id", f"the id {problem}; sample ids use {ID_RULE}")
    return sample_id


def is_sample_id(sample_id: object) -> bool:
    """Whether `sample_id` can name a folder of the store (as an id already stored)."""
    return name_problem(sample_id, portable=False) is None
