"""Running the command line in-process and checking a refusal: one line, its exit status, no traceback."""

from __future__ import annotations

from click.testing import CliRunner
from tamx.pipeline.cli import main


def tamx_cli(*args):
    """Run the command line in-process; an exception escaping it fails the test."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def refused(result, *expected: str, code: int = 1) -> str:
    """Assert a failure: the exit status, each expected text, no traceback, the error on one line."""
    output = result.output
    assert result.exit_code == code, output
    assert "Traceback" not in output, output
    for text in expected:
        assert text in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    if code != 0 and errors:
        assert len(errors) == 1, output
    return output
