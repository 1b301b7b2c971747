"""CLI conventions: fast help without torch, version, exit codes, offline backbone failure."""

from __future__ import annotations

import subprocess
import sys
import time

from typer.testing import CliRunner

from biomedvr_cli import __version__
from biomedvr_cli.cli.app import app

runner = CliRunner()


def test_help_and_version_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from biomedvr_cli.cli.app import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['--version'])\n"
        "assert r.exit_code == 0\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_version_prints_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def _all_commands() -> list[list[str]]:
    """Every command and subcommand the app registers, as argument paths (from the registry, not a list here)."""
    import typer.main

    paths: list[list[str]] = []

    def walk(command, path: list[str]) -> None:  # a Click command or group (Typer may vendor Click)
        if path:
            paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_every_registered_command_has_help_and_refuses_a_bad_option() -> None:
    from biomedvr_cli.cli.registry import COMMAND_MODULES

    paths = _all_commands()
    assert {p[0] for p in paths} == set(COMMAND_MODULES)
    assert ["attributes", "generate"] in paths and ["backbones", "export"] in paths and ["sandbox", "make"] in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.stdout, path
        bad = runner.invoke(app, [*path, "--no-such-option"])
        assert bad.exit_code == 2 and "error:" in bad.stderr and "No such option" in bad.stderr, (path, bad.stderr)
        assert "Traceback" not in bad.stderr


def test_usage_error_is_exit_2() -> None:
    result = runner.invoke(app, ["fit"])
    assert result.exit_code == 2


def test_unknown_backbone_is_usage_error(tmp_path) -> None:
    from tests.conftest import make_color_tree

    make_color_tree(tmp_path / "imgs", per_class=3)
    result = runner.invoke(app, ["fit", str(tmp_path / "imgs"), "--shots", "1", "--backbone", "no-such-thing",
                                 "--out", str(tmp_path / "a.safetensors")])
    assert result.exit_code == 2
    assert "unknown backbone" in result.stderr
    assert "Traceback" not in result.stderr


def test_biomedclip_offline_fails_fast_with_fetch_command(tmp_path) -> None:
    from tests.conftest import make_color_tree

    make_color_tree(tmp_path / "imgs", per_class=3)
    start = time.perf_counter()
    result = runner.invoke(app, ["fit", str(tmp_path / "imgs"), "--shots", "1", "--out", str(tmp_path / "a.safetensors")])
    assert time.perf_counter() - start < 10
    assert result.exit_code == 4
    assert "hf download microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224" in result.stderr
    assert "local-dir:" in result.stderr
    assert not (tmp_path / "a.safetensors").exists()


def test_backbones_lists_presets_as_json() -> None:
    import json

    result = runner.invoke(app, ["backbones", "--json"])
    assert result.exit_code == 0
    names = {row["name"]: row for row in json.loads(result.stdout)["backbones"]}
    assert {"biomedclip", "clip-vit-b16", "clip-vit-b32", "sandbox"} <= set(names)
    assert names["biomedclip"]["available"] is False


def test_console_is_wide_when_not_a_terminal(monkeypatch) -> None:
    from biomedvr_cli.cli import console as render

    monkeypatch.delenv("COLUMNS", raising=False)
    assert render._make_console().width == render.LOG_WIDTH  # pytest's stderr is not a terminal
    monkeypatch.setenv("COLUMNS", "100")
    assert render._make_console().width == 100


def test_help_lists_commands_in_workflow_order() -> None:
    from typer.testing import CliRunner

    from biomedvr_cli.cli.app import app
    from biomedvr_cli.cli.registry import COMMAND_MODULES

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.startswith("  ")]
    assert listed == list(COMMAND_MODULES)
