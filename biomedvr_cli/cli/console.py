"""Terminal output: human text and progress on stderr (Rich), JSON documents on stdout.

Only commands import this module; library code reports through return values and
callbacks.
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

# Width for output that is not a terminal (a log file, a pipe, CI): Rich would fall back to
# 80 columns and wrap class names and table cells mid-word. COLUMNS still wins when set.
LOG_WIDTH = 160


def _make_console() -> Console:
    """The stderr console: the terminal's width, or LOG_WIDTH when stderr is not a terminal."""
    console = Console(stderr=True, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=True, highlight=False, width=LOG_WIDTH)
    return console


# Human output goes to stderr so that stdout stays clean for --json and CSV.
console = _make_console()


def emit_json(document: Any) -> None:
    """Print exactly one JSON document on stdout."""
    # allow_nan=False: a bare NaN is not JSON; a non-finite number reaching here is a bug to surface, not to print.
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


def printable(message: str, *, keep_newlines: bool = False) -> str:
    """``message`` with control and format characters written as escapes (``\\x1b``, ``\\n``, ``\\u202e``):
    a file or class name holding ESC or a bidirectional override must not recolour or reorder the
    terminal, and one holding a line break must not split an error's one line in two. The zero-width
    (non-)joiners are kept: Persian and Indic words and emoji sequences are written with them."""
    if message.isprintable():
        return message
    out = []
    for ch in message:
        if (ch == "\n" and keep_newlines or ch in _JOINERS
                or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp")):
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


_JOINERS = frozenset("\u200c\u200d")


def cell(value: object, number_format: str = ".4f") -> Text:
    """A table cell as plain text (never read as rich markup), control characters escaped; a
    :class:`rich.text.Text` (a styled word the command made) as it is."""
    if isinstance(value, Text):
        return value
    if value is None:
        return Text("")
    return Text(format(value, number_format) if isinstance(value, float) else printable(str(value)))


def info(message: str) -> None:
    """Human information on stderr."""
    console.print(escape(printable(message, keep_newlines=True)), soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr, on one line."""
    console.print(f"[yellow]warning:[/yellow] {escape(printable(message))}", soft_wrap=True)


def error(message: str) -> None:
    """An error line on stderr (used once, at the CLI boundary)."""
    console.print(f"[red]error:[/red] {escape(printable(message))}", soft_wrap=True)


def progress_bar(kind: str = "count", *, enabled: bool = True):
    """The one progress bar of the command line: transient, on stderr, off when not a terminal.

    ``kind`` picks the columns: ``count`` (done/total and a status field), ``epochs``
    (epoch done/total, status, time left) or ``bytes`` (size, speed, time left). Tasks are
    added with a ``status`` field (``bar.add_task(label, total=n, status="")``).
    """
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    columns = {
        "count": (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), TimeRemainingColumn()),
        "epochs": (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("epoch {task.completed}/{task.total}"),
                   TextColumn("{task.fields[status]}"), TimeRemainingColumn()),
        "bytes": (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn()),
    }[kind]
    # A bar only helps on a terminal; in logs and pipes it would leave stray lines.
    return Progress(*columns, console=console, transient=True, disable=not enabled or not console.is_terminal)


class EpochProgress:
    """Training epochs on the shared progress bar (loss, best validation accuracy, time left)."""

    def __init__(self, description: str = "fit", enabled: bool = True) -> None:
        self._progress = progress_bar("epochs", enabled=enabled)
        self._task = None
        self._description = description

    def __enter__(self) -> EpochProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def update(self, report) -> None:
        """Callback for the training loop's EpochReport."""
        if self._task is None:
            self._task = self._progress.add_task(self._description, total=report.epochs, status="")
        status = f"loss {report.loss:.3f}"
        if report.best_val_accuracy is not None:
            status += f"  best val acc {report.best_val_accuracy:.3f}"
        self._progress.update(self._task, completed=report.epoch, status=status)


def key_value_table(title: str, rows: list[tuple[str, object]]) -> None:
    """A two-column table on stderr."""
    from rich.table import Table

    table = Table(title=Text(printable(title)), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(cell(key), cell(value))
    console.print(table)


def rows_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    """A table with a header row on stderr."""
    from rich.table import Table

    table = Table(title=Text(printable(title)), title_justify="left")
    for col in columns:
        table.add_column(cell(col))  # a header may be a class name: text, never markup
    for row in rows:
        table.add_row(*[cell(v, ".3f") for v in row])
    console.print(table)
