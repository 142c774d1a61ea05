"""Exceptions raised by tamx. Every message says what is wrong and what to do."""

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
        super().__init__(f"sample {sample_id!r}, field {field!r}: {problem}")
