"""The Typer application: wires the command modules and is the one error boundary.

Every expected failure is a ``BiomedVRError``; it is caught here, printed as one line
with its fix, and turned into its exit code. Click's own usage errors (a bad option
value, a missing argument) get the same ``error: ... (fix: ...)`` line and exit 2. A
last-resort handler turns what no layer anticipated into one line as well:
OSError (PermissionError included), RecursionError and MemoryError exit 3, anything
else exits 1. A traceback, and third-party warnings (pydicom, torch, ...), are shown only
with ``biomedvr --debug`` or ``BIOMEDVR_DEBUG=1``. SIGTERM unwinds like Ctrl-C (partial
outputs, locks and temporary files are removed on the way out) and exits 143. Command
modules import torch lazily so that ``biomedvr --help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from biomedvr_cli import __version__
from biomedvr_cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    EXIT_TERMINATED,
    EXIT_UNEXPECTED,
    BiomedVRError,
    Terminated,
)
from biomedvr_cli.pipeline.notices import BiomedVRWarning

DEBUG_ENV = "BIOMEDVR_DEBUG"
# Click's error base class, wherever this Typer keeps Click (newer Typers vendor it).
ClickException: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_DEBUG_HINT = f"rerun with `biomedvr --debug ...` (or {DEBUG_ENV}=1) to see the traceback"


def debug_enabled(ctx: typer.Context | None = None) -> bool:
    """True with ``biomedvr --debug`` or ``BIOMEDVR_DEBUG`` set to anything but empty, 0, false, no or off.

    The false words are those of ``BIOMEDVR_ALLOW_DOWNLOAD``; any other value turns debugging on
    (showing more is the safe side of a typo here, unlike downloads).
    """
    if ctx is not None and ctx.find_root().params.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def _show_own_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
    from biomedvr_cli.cli import console as render

    render.warn(str(message))


@contextlib.contextmanager
def _warnings_for_users(debug: bool) -> Iterator[None]:
    """Third-party warnings (with their site-packages paths) are silenced unless debugging;
    biomedvr's own warnings are printed as ``warning: ...`` lines."""
    if debug:
        yield
        return
    with warnings.catch_warnings():  # restores the filters and showwarning on the way out
        warnings.simplefilter("ignore")
        warnings.filterwarnings("default", module=r"biomedvr_cli(\.|$)")
        # Cautions are attributed to the caller's line (pipeline.notices.warn_at_caller): here click's.
        warnings.filterwarnings("default", category=BiomedVRWarning)
        warnings.showwarning = _show_own_warning
        yield


def _raise_terminated(signum: int, frame: Any) -> None:
    # A second SIGTERM (a supervisor repeating itself) must not cut the cleanup of the first short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main thread,
    so every ``finally`` and ``except KeyboardInterrupt`` cleanup runs for it as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _last_resort(exc: BaseException) -> tuple[str, int]:
    """One line and an exit code for an exception no layer turned into a BiomedVRError."""
    if isinstance(exc, OSError):
        given = exc.filename if isinstance(exc.filename, (str, bytes, os.PathLike)) else None
        name = Path(os.fsdecode(given)).name if given else ""  # the file's name only, as everywhere, never its folder
        what = f"cannot use {name}: " if name else "a file could not be read or written: "
        return (f"{what}{exc.strerror or type(exc).__name__} (fix: check that it exists, that you may read it "
                "or write to its folder, and that the disk has free space)", EXIT_INVALID_INPUT)
    if isinstance(exc, RecursionError):
        return ("an input is nested too deeply to process (fix: check the JSON or other structured input files; "
                f"{_DEBUG_HINT})", EXIT_INVALID_INPUT)
    if isinstance(exc, MemoryError):
        return ("out of memory (fix: use smaller or fewer images, a lower --max-pixels or --batch-size)",
                EXIT_INVALID_INPUT)
    detail = (str(exc).splitlines() or [""])[0][:200]
    return (f"unexpected {type(exc).__name__}" + (f": {detail}" if detail else "")
            + f" (fix: {_DEBUG_HINT}, and report it)", EXIT_UNEXPECTED)


def _usage_error(exc: Any) -> NoReturn:
    """Click's parsing errors as one ``error: ... (fix: ...)`` line."""
    from biomedvr_cli.cli import console as render

    if type(exc).__name__ == "NoArgsIsHelpError":  # `biomedvr` alone prints the help, as before
        exc.show()
        sys.exit(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "biomedvr"
    # Typer words a refused Literal choice "Value error, 'x' is not one of ..."; the prefix says nothing.
    message = " ".join(exc.format_message().split()).replace("Value error, ", "")
    render.error(f"{message} (fix: see `{command} --help`)")
    sys.exit(exc.exit_code)


def _after_interrupt(ctx: typer.Context) -> str:
    """What an interrupted command left: a command may say what it kept (``ctx.meta["biomedvr.after_interrupt"]``:
    predict's finished rows, benchmark's finished jobs), else what it had written in full."""
    if ctx.meta.get("biomedvr.after_interrupt"):
        return ctx.meta["biomedvr.after_interrupt"]
    return _written_before() or "partial outputs were removed (fix: run the command again)"


def _written_before() -> str | None:
    """What a command had written in full before the interrupt (and kept), by name; None when nothing."""
    from biomedvr_cli.atomic import committed_outputs

    names = [path.name for path in committed_outputs()]
    if not names:
        return None
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{shown} had been written in full before it and {'is' if len(names) == 1 else 'are'} kept; nothing "
            "partial was left (fix: use them as they are, or run the command again with --force)")


class _BoundaryGroup(TyperGroup):
    """A click group that maps library errors, parsing errors and Ctrl-C to exit codes."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        from biomedvr_cli.cli.registry import help_order

        return help_order(list(super().list_commands(ctx)))

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        """Run the command; in standalone mode print click's errors in biomedvr's own format."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            _usage_error(exc)
        except typer.Abort:
            from biomedvr_cli.cli import console as render

            render.error("aborted (fix: run the command again)")
            sys.exit(EXIT_UNEXPECTED)
        except KeyboardInterrupt:  # outside the command (parsing, or exiting after it): its own handler is in invoke
            from biomedvr_cli.cli import console as render

            render.error(f"interrupted; {_written_before() or 'nothing partial was left'}")
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: typer.Context) -> Any:
        from biomedvr_cli.atomic import forget_committed

        forget_committed()
        debug = debug_enabled(ctx)
        with _warnings_for_users(debug), _sigterm_as_interrupt():
            try:
                return super().invoke(ctx)
            except (typer.Exit, typer.Abort, ClickException, BrokenPipeError):
                raise  # Click's own exits and errors; a closed pipe (`| head`) is Typer's to quiet
            except BiomedVRError as exc:
                self._fail(exc.one_line(), exc.exit_code, debug)
            except Terminated:
                self._fail(f"terminated (SIGTERM); {_after_interrupt(ctx)}", EXIT_TERMINATED, False)
            except KeyboardInterrupt:
                self._fail(f"interrupted; {_after_interrupt(ctx)}", EXIT_INTERRUPTED, False)
            except Exception as exc:  # MemoryError and RecursionError are Exceptions too
                if debug:
                    raise
                self._fail(*_last_resort(exc), False)

    @staticmethod
    def _fail(line: str, code: int, show_traceback: bool) -> NoReturn:
        from biomedvr_cli.cli import console as render

        if show_traceback:
            traceback.print_exc(file=sys.stderr)
        render.error(line)
        raise typer.Exit(code) from None


app = typer.Typer(
    cls=_BoundaryGroup,
    name="biomedvr",
    help="Adapt a frozen vision-language model to your biomedical classes from a few labelled images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"biomedvr {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug",
        help=f"Show the traceback of an error and third-party warnings (also {DEBUG_ENV}=1). Goes before the command.",
    ),
) -> None:
    """Adapt a frozen vision-language model to your biomedical classes from a few labelled images."""


def _register() -> None:
    # Imported here so the import order is explicit; none of these import torch at module level.
    from biomedvr_cli.cli import options, registry

    registry.register_all(app)
    options.refuse_empty_paths(app)


_register()


def main() -> None:
    """Console-script entry point. Once the command is done, a late Ctrl-C is ignored: it must not
    print a traceback from the interpreter's exit (torch's atexit hooks, say) nor change the status."""
    try:
        app()
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
