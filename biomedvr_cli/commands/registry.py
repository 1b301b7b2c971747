"""Attach every command module to the Typer app.

Each command module exposes ``register(app)``; a module that is not present yet is
simply skipped so that the tool stays usable while commands are being built.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = (
    "attributes",
    "fit",
    "eval",
    "predict",
    "info",
    "backbones",
    "sandbox",
    "demo",
    "benchmark",
)


def register_all(app: typer.Typer) -> None:
    """Register each command module's commands on ``app`` in a fixed order."""
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"biomedvr_cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"biomedvr_cli.commands.{name}":
                continue
            raise
        module.register(app)
