"""Attach every command module to the Typer app.

Each command module exposes ``register(app)`` and registers commands named like the module.
The order here is the order of a first session (try the demo, write attributes, fit, eval,
predict, inspect) and is the order ``biomedvr --help`` lists them in.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = (
    "demo",
    "attributes",
    "fit",
    "eval",
    "predict",
    "info",
    "backbones",
    "benchmark",
    "sandbox",
)


def register_all(app: typer.Typer) -> None:
    """Register each command module's commands on ``app`` in a fixed order."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"biomedvr_cli.cli.commands.{name}").register(app)


def help_order(names: list[str]) -> list[str]:
    """``names`` in COMMAND_MODULES order (Typer would list command groups after plain commands)."""
    rank = {name: i for i, name in enumerate(COMMAND_MODULES)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))
