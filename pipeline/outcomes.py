"""What a stage did with each sample (or file): one typed outcome each, gathered in one report.

Every stage (encode, import, explain, render, eval) returns a `StageReport`, or a dataclass
that extends it with what only that stage knows; the command line lists its `failed` with
`tamx.pipeline.errors.report_failures`, the one failure printer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Status(enum.Enum):
    DONE = "done"
    SKIPPED = "skipped"  # already stored, nothing to do
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """The outcome of one sample (or file): `name` is what the report is keyed by, `reason`
    why it failed (without the name: the report shows it beside it)."""

    name: str
    status: Status
    reason: str = ""

    @classmethod
    def done(cls, name: str) -> Outcome:
        return cls(name, Status.DONE)

    @classmethod
    def skipped(cls, name: str) -> Outcome:
        return cls(name, Status.SKIPPED)

    @classmethod
    def failed(cls, name: str, reason: str) -> Outcome:
        return cls(name, Status.FAILED, reason)


@dataclass(kw_only=True)
class StageReport:
    """Names done, skipped (already stored) and failed (name -> reason), in the order they ended."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> Outcome:
        """Record one outcome; returns it."""
        if outcome.status is Status.DONE:
            self.done.append(outcome.name)
        elif outcome.status is Status.SKIPPED:
            self.skipped.append(outcome.name)
        else:
            self.failed[outcome.name] = outcome.reason
        return outcome
