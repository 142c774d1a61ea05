"""Running the command line in-process and checking a refusal: one line, its exit status, no traceback."""

from __future__ import annotations

from click.testing import CliRunner
from tamx.pipeline.cli import main


def tamx_cli(*args):
    """Run the command line in-process; an exception escaping it fails the test."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def tamx_output(*args, code: int = 0) -> str:
    """Run the command line in-process and return its output; assert the exit status and that no
    exception other than the exit escaped it."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.output


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
