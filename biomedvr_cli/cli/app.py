"""The Typer application: wires the command modules and is the one error boundary.

Every expected failure is a ``BiomedVRError``; it is caught here, printed as one line
with its fix, and turned into its exit code. Nothing below this module prints a
traceback for an expected error. Command modules import torch lazily so that
``biomedvr --help`` and ``--version`` stay fast.
"""

from __future__ import annotations

from typing import Any

import click
import typer
from typer.core import TyperGroup

from biomedvr_cli import __version__
from biomedvr_cli.errors import EXIT_INTERRUPTED, BiomedVRError


class _BoundaryGroup(TyperGroup):
    """A click group that maps library errors and Ctrl-C to exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from biomedvr_cli.cli.registry import help_order

        return help_order(list(super().list_commands(ctx)))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BiomedVRError as exc:
            from biomedvr_cli.cli import console as render

            render.error(exc.one_line())
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            from biomedvr_cli.cli import console as render

            render.error("interrupted; partial outputs were removed")
            raise typer.Exit(EXIT_INTERRUPTED) from None


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
) -> None:
    """Adapt a frozen vision-language model to your biomedical classes from a few labelled images."""


def _register() -> None:
    # Imported here so the import order is explicit; none of these import torch at module level.
    from biomedvr_cli.cli import registry

    registry.register_all(app)


_register()


def main() -> None:
    """Console-script entry point."""
    app()
