"""Terminal output: human text and progress on stderr (Rich), JSON documents on stdout.

Only commands import this module; library code reports through return values and
callbacks.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Human output goes to stderr so that stdout stays clean for --json and CSV.
console = Console(stderr=True, highlight=False)


def emit_json(document: Any) -> None:
    """Print exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """One line of human information on stderr."""
    console.print(message)


def warn(message: str) -> None:
    """A warning on stderr."""
    console.print(f"[yellow]warning:[/yellow] {message}")


def error(message: str) -> None:
    """An error line on stderr (used once, at the CLI boundary)."""
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
