"""docs/commands.md agrees with the CLI: walks the command tree and the page.

Every command has a section (a heading holding ``biomedvr COMMAND ...`` in a code span; a
heading may name several commands that take the same options);
every name of every visible option is documented for its command; nothing is documented
that does not exist. An option counts as documented for a command when it appears in a code
span of that command's section, or in a ``biomedvr COMMAND ...`` code span or code-block
line anywhere on the page (that command line's own options, wherever it stands). Hidden
options (old spellings kept as aliases) may be documented but need not be. The same
command lines in README.md must name existing commands and options too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
COMMANDS_MD = ROOT / "docs" / "commands.md"
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
SPAN = re.compile(r"`([^`\n]+)`")
PLACEHOLDER = re.compile(r"^(\.\.\.|[A-Z][A-Z0-9_.:,-]*(\.\.\.)?)$")  # IMAGES, COMMAND, DIR, ...


@dataclass
class Command:
    """One node of the click tree: its options by name, which of them are visible, its subcommands."""

    path: tuple[str, ...]
    command: object
    names: dict[str, object] = field(default_factory=dict)  # every spelling -> its parameter
    visible: set[str] = field(default_factory=set)
    subcommands: dict[str, Command] = field(default_factory=dict)


def command_tree() -> Command:
    """The Typer app as a tree of Command nodes (``--help`` exists everywhere and needs no line)."""

    def walk(command, path: tuple[str, ...]) -> Command:
        node = Command(path, command)
        for param in command.params:
            if param.param_type_name != "option":
                continue
            for name in (*param.opts, *param.secondary_opts):
                node.names[name] = param
                if not param.hidden:
                    node.visible.add(name)
        node.names["--help"] = None
        for name, sub in getattr(command, "commands", {}).items():
            node.subcommands[name] = walk(sub, (*path, name))
        return node

    return walk(typer.main.get_command(app), ())


def all_commands(node: Command) -> list[Command]:
    return [node, *[c for sub in node.subcommands.values() for c in all_commands(sub)]]


def takes_value(param) -> bool:
    return param is not None and not getattr(param, "is_flag", False) and not getattr(param, "count", False)


def read_command_line(tree: Command, text: str, problems: list[str], where: str) -> tuple[Command, list[tuple[Command, str]]]:
    """``biomedvr ...`` text -> (the command it runs, (command, option) pairs it names); unknown ones go to problems."""
    tokens = text.replace("\\", " ").split()[1:]
    node, found, skip = tree, [], False
    for token in tokens:
        if skip:
            skip = False
            continue
        if token.startswith("-") and OPTION.match(token):
            name = token.split("=", 1)[0]
            found.append((node, name))
            skip = "=" not in token and takes_value(node.names.get(name))
        elif node.subcommands and not found and not PLACEHOLDER.match(token):
            if token not in node.subcommands:
                problems.append(f"{where}: `biomedvr {' '.join(node.path + (token,))}` is no command")
                break
            node = node.subcommands[token]
    return node, found


def command_lines(markdown: str) -> list[str]:
    """Every ``biomedvr ...`` command line of a page: code spans and code-block lines, one command each."""
    lines, in_block = [], False
    for raw in markdown.splitlines():
        if raw.lstrip().startswith("```"):
            in_block = not in_block
            continue
        texts = [raw.split(" #")[0]] if in_block else SPAN.findall(raw)
        for text in texts:
            for part in re.split(r"\s(?:\|\||&&|\||;)\s", text):
                part = part.strip().removeprefix("$ ").removeprefix(".venv/bin/")
                if part.startswith("biomedvr ") or part == "biomedvr":
                    lines.append(part)
    return lines


def documented(tree: Command, markdown: str, problems: list[str]) -> tuple[set[tuple[str, ...]], dict[tuple[str, ...], set[str]]]:
    """The commands with a section, and the options documented per command path."""
    sections: set[tuple[str, ...]] = set()
    options: dict[tuple[str, ...], set[str]] = {}
    current: list[Command] = []  # a heading may name several commands that share their options
    in_block = False
    for number, line in enumerate(markdown.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            continue
        spans = SPAN.findall(line)
        if re.match(r"^#{2,4} ", line):
            current = [read_command_line(tree, s, problems, f"commands.md:{number}")[0]
                       for s in spans if s.startswith("biomedvr")]
            sections.update(node.path for node in current)
        for span in (s for s in spans if s.startswith("-")):
            for node in current:
                options.setdefault(node.path, set()).update(OPTION.findall(span))
    for text in command_lines(markdown):
        _, found = read_command_line(tree, text, problems, "commands.md")
        for node, name in found:
            options.setdefault(node.path, set()).add(name)
    return sections, options


def label(path: tuple[str, ...]) -> str:
    return " ".join(("biomedvr", *path))


def check(markdown: str) -> list[str]:
    """Every disagreement between a commands page and the CLI, one line each."""
    tree = command_tree()
    problems: list[str] = []
    sections, options = documented(tree, markdown, problems)
    nodes = {node.path: node for node in all_commands(tree)}
    for path, node in nodes.items():
        if path and path not in sections:
            problems.append(f"`{label(path)}` has no section (a heading with `{label(path)} ...`)")
        missing = sorted(node.visible - options.get(path, set()))
        if missing:
            problems.append(f"`{label(path)}`: undocumented option(s) {', '.join(missing)}")
    for path, names in options.items():
        unknown = sorted(n for n in names if n not in nodes[path].names)
        if unknown:
            problems.append(f"`{label(path)}`: documented option(s) that do not exist: {', '.join(unknown)}")
    return problems


def test_every_command_and_option_is_documented_and_nothing_else() -> None:
    problems = check(COMMANDS_MD.read_text(encoding="utf-8"))
    assert not problems, "docs/commands.md and the CLI disagree:\n" + "\n".join(problems)


def test_readme_command_lines_exist() -> None:
    tree = command_tree()
    problems: list[str] = []
    for text in command_lines((ROOT / "README.md").read_text(encoding="utf-8")):
        _, found = read_command_line(tree, text, problems, "README.md")
        problems += [f"README.md: `{text}`: {name} is no option of `{label(node.path)}`"
                     for node, name in found if name not in node.names]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("markdown", "words"), [
    ("## `biomedvr fit IMAGES`\n\n| `--shots` | K |\n| `--colour` | red |\n", "do not exist: --colour"),
    ("## `biomedvr frobnicate`\n", "`biomedvr frobnicate` is no command"),
    ("```bash\nbiomedvr eval ./x --adapter a --wings 2\n```\n", "`biomedvr eval`: documented option(s) that do not exist: --wings"),
    ("## `biomedvr fit IMAGES`\n\n`--shots`\n", "`biomedvr fit`: undocumented option(s)"),
    ("## Something\n", "`biomedvr info` has no section"),
    ("Run `biomedvr --debug fit --shots 2 --paper`.\n", "`biomedvr`: undocumented option(s) --version"),
])
def test_the_check_finds_what_is_wrong(markdown: str, words: str) -> None:
    """The checker itself: an invented option or command, and a missing one, are each reported."""
    problems = check(markdown)
    assert any(words in p for p in problems), problems


def test_version_follows_the_changelog() -> None:
    """__version__ is the Unreleased section's `Next release:` version, else the newest release (docs/development.md)."""
    from biomedvr_cli import __version__

    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = [tuple(map(int, v.split("."))) for v in re.findall(r"(?m)^## \[(\d+\.\d+\.\d+)\]", changelog)]
    assert released, "CHANGELOG.md has no released version heading"
    unreleased = re.search(r"(?m)^## \[Unreleased\]\s*\n\s*(.*)$", changelog)
    if unreleased:
        named = re.fullmatch(r"Next release: (\d+\.\d+\.\d+)", unreleased.group(1).strip())
        assert named, "the line after `## [Unreleased]` must be `Next release: X.Y.Z`"
        expected = named.group(1)
        assert tuple(map(int, expected.split("."))) > max(released), "the next release must be above every release"
    else:
        expected = ".".join(map(str, max(released)))
    assert __version__ == expected
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"biomedvr {expected}"


def test_choice_options_list_their_values_and_fit_help_groups_its_options() -> None:
    """Values kept literal in the CLI (so --help never imports torch) match the library's, and --help shows them."""
    from biomedvr_cli.backbones.device import DEVICE_CHOICES
    from biomedvr_cli.cli import options
    from biomedvr_cli.method.config import COMBINE_KINDS, GATE_KINDS, HEAD_TESTS, VR_KINDS
    from biomedvr_cli.method.recipes import available_recipes
    from biomedvr_cli.method.registry import registry
    from biomedvr_cli.pipeline.evaluate import SPLIT_CHOICES
    from biomedvr_cli.sandbox.shifts import SHIFTS

    assert options.DEVICE_CHOICES == DEVICE_CHOICES and options.EVAL_SPLITS == SPLIT_CHOICES
    assert options.SANDBOX_SHIFTS == (*SHIFTS, "default")
    env = {"COLUMNS": "400"}
    fit_help = CliRunner().invoke(app, ["fit", "--help"], env=env).stdout
    for option, values in (("--vr", VR_KINDS), ("--gate", GATE_KINDS), ("--combine", COMBINE_KINDS),
                           ("--head-test", HEAD_TESTS), ("--recipe", available_recipes()),
                           ("--device", DEVICE_CHOICES)):
        assert f"{option} <{'|'.join(values)}>" in fit_help, option
    flat = re.sub(r"\s+", " ", fit_help).replace("- ", "-")  # help wraps long names at their hyphens
    assert all(f" {name}," in flat or f" {name} " in flat for name in registry().fit_methods())  # --method's names
    panels = [line.rstrip(":") for line in fit_help.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert panels[-6:] == ["Data", "Method", "Training", "Backbone", "Output", "Options"]
    assert "-k, --shots" in fit_help and "--top-k-sentences" in fit_help and "--k " not in fit_help
    for command, option, values in ((["eval"], "--split", SPLIT_CHOICES), (["predict"], "--format", ("table", "json", "csv")),
                                    (["sandbox", "make"], "--shift", options.SANDBOX_SHIFTS),
                                    (["attributes", "generate"], "--provider", ("anthropic", "bedrock", "vertex"))):
        text = CliRunner().invoke(app, [*command, "--help"], env=env).stdout
        assert f"{option} <{'|'.join(values)}>" in text, (command, option)
        assert f"--device <{'|'.join(DEVICE_CHOICES)}>" in text or "--device" not in text
