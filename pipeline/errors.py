"""The command line's one error path: every failure ends in one line on stderr and a non-zero exit.

- tamx's own errors (TamxError and its subclasses, from any stage) and what the user's
  system refuses (a full disk, a missing permission, a read-only folder): the message, status 1;
- Ctrl-C: status 130, with how to resume;
- anything else is a bug in tamx: it says so, where to report it, status 70 (EX_SOFTWARE).

`-vv` shows the traceback of any of them. Per-sample failures, which do not stop a stage,
are listed by `report_failures` and end with status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import click

from tamx.errors import TamxError, printable, shown_id

from .files import is_no_space

EXIT_FAILED, EXIT_BUG, EXIT_INTERRUPTED = 1, 70, 130
TRACEBACK_VERBOSITY = 2
REPORT_BUGS = "the tamx issue tracker"


def _bug_tracker() -> str:
    """Where to report a bug: the package's "Issues" project URL when it has one."""
    from importlib import metadata

    try:
        urls = metadata.metadata("tamx").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("issues", "bug tracker", "tracker"):
            return url.strip()
    return REPORT_BUGS


def one_line(text: object) -> str:
    """A message on one line, printable on a terminal (it may quote a run's content)."""
    return printable(" ".join(str(text).split()))


def user_message(exc: BaseException) -> str | None:
    """The one-line message of an error the user can cause and fix, or None for a bug."""
    if isinstance(exc, TamxError):
        return one_line(str(exc))
    if is_no_space(exc):
        where = getattr(exc, "filename", None)
        return one_line(f"no space left on device while writing {where or 'to disk'}; free some space and run again")
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        if exc.strerror:
            other = f" -> {exc.filename2}" if exc.filename2 else ""
            return one_line(f"{exc.strerror}:{where}{other}" if where else exc.strerror)
        return one_line(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, MemoryError):
        return "out of memory; work on fewer samples at once (--samples, --workers, --batch-size) or add memory"
    return None


def bug_message(exc: BaseException) -> str:
    """The one-line message of an unexpected error: a bug in tamx, and where to report it."""
    from tamx import __version__

    return one_line(
        f"internal error ({type(exc).__name__}: {exc}). This is a bug in tamx {__version__}, not a problem "
        f"with your input; please report it at {_bug_tracker()} with the command you ran and the output of "
        "the same command with -vv"
    )


class ErrorGroup(click.Group):
    """A click group whose commands all end through the one error path."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            if _verbosity(ctx) >= TRACEBACK_VERBOSITY:
                raise
            click.echo("\ninterrupted; run the same command again to resume where it stopped", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            raise  # `tamx info RUN | head`: click's main exits quietly with status 1
        except Exception as exc:  # the one place every error ends
            if _verbosity(ctx) >= TRACEBACK_VERBOSITY:
                raise
            message = user_message(exc)
            click.echo(f"Error: {message or bug_message(exc)}", err=True)
            ctx.exit(EXIT_FAILED if message is not None else EXIT_BUG)


def _verbosity(ctx: click.Context) -> int:
    return int(ctx.params.get("verbose") or 0)


def report_failures(failed: Mapping[str, str], what: str = "sample(s)") -> None:
    """List the per-sample (or per-file) failures of a stage and exit with status 1, if there are any."""
    if not failed:
        return
    click.echo(f"{len(failed)} {what} failed:", err=True)
    for name, reason in failed.items():
        click.echo(f"  {one_line(name)}: {one_line(reason)}", err=True)
    sys.exit(EXIT_FAILED)


def name_option(what: str, many: bool = False, new: bool = False):
    """A click callback that refuses an option value that cannot name a folder of the store
    (a sample id, a variant; `many`: comma-separated; `new`: a name to create, held to the
    portable rule), with the rule, before any work starts."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        from tamx.records import ID_RULE, name_problem  # numpy: not needed for `tamx --help`

        names = [] if value is None else ([v.strip() for v in value.split(",") if v.strip()] if many else [value])
        for name in names:
            problem = name_problem(name, portable=new)
            if problem is not None:
                raise click.BadParameter(f"the {what} {shown_id(name)} {problem}; {what}s use {ID_RULE}")
        return value

    return check
