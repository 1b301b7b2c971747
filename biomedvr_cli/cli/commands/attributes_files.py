"""`biomedvr attributes validate` and `attributes import`: check and convert attributes files.

Registered by the ``attributes`` command module (this module is part of that group, not a
top-level command). Also holds the ``fit`` hint printed after any attributes file is written.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Optional

import typer

from biomedvr_cli.cli import options
from biomedvr_cli.atomic import check_folder_writable, refuse_input_as_output
from biomedvr_cli.attributes import AttributeFile, load_attributes, save_attributes
from biomedvr_cli.attributes.classlist import class_names_from
from biomedvr_cli.attributes.importer import import_reference
from biomedvr_cli.cli import console as render
from biomedvr_cli.errors import InvalidInputError, OutputExistsError, OutputNotWritableError


def fit_hint(out: Path) -> str:
    """The ``biomedvr fit`` command line that uses the attributes file ``out`` (shell-quoted)."""
    # IMAGES and the shot count are the user's to choose; 8 shots is the middle of the usual sweep.
    return f"next: biomedvr fit IMAGES --attributes {shlex.quote(str(out))} --shots 8"


def validate_cmd(
    file: Path = typer.Argument(..., metavar="FILE", help="Attributes JSON file to check.", show_default=False),
    classes: Optional[Path] = typer.Option(None, "--classes", metavar="FILE", help="Also check that exactly these classes are present."),
    class_: Optional[list[str]] = typer.Option(
        None, "--class", metavar="NAME", help="Also check that exactly these classes are present (repeat it for each)."),
    json_out: bool = options.JsonOption,
) -> None:
    """Check an attributes file (hand-written, imported or generated); exit 3 on the first problem."""
    attrs = load_attributes(file)
    names = class_names_from(classes, class_, required=False)
    if names is not None:
        _check_same_classes(attrs, names, file.name)
    counts = {s: sum(len(getattr(a, s)) for a in attrs.classes.values()) for s in ("descriptive", "distinctive", "confusion")}
    if json_out:
        render.emit_json(
            {
                "valid": True,
                "file": file.name,
                "task": attrs.task,
                "classes": attrs.class_names,
                "sentences": counts,
                "content_hash": attrs.content_hash(),
                "provenance": attrs.provenance,
            }
        )
        return
    source = attrs.provenance.get("source", "hand-written")
    render.info(
        f"{file.name} is valid: {len(attrs.classes)} classes, "
        f"{counts['descriptive']} descriptive / {counts['distinctive']} distinctive / "
        f"{counts['confusion']} confusion sentences (source: {source}; content hash {attrs.content_hash()[:12]})"
    )


def _check_same_classes(attrs: AttributeFile, names: list[str], file_name: str) -> None:
    have = {n.casefold(): n for n in attrs.classes}
    want = {n.casefold(): n for n in names}
    missing = [want[k] for k in want if k not in have]
    if missing:
        raise InvalidInputError(
            f"{file_name} has no entry for class {json.dumps(missing[0], ensure_ascii=False)}", "add it to the file"
        )
    extra = [have[k] for k in have if k not in want]
    if extra:
        raise InvalidInputError(
            f"{file_name} has class {extra[0]!r}, which is not in the class list", "remove it or add it to the list"
        )
    renamed = [(want[k], have[k]) for k in want if want[k] != have[k]]
    if renamed:
        raise InvalidInputError(
            f"{file_name} spells class {renamed[0][0]!r} as {renamed[0][1]!r}", "use the same spelling in both"
        )


def import_cmd(
    descriptive: Path = typer.Option(..., "--descriptive", metavar="FILE", help="Reference file: class_name -> descriptive sentences."),
    distinctive: Path = typer.Option(..., "--distinctive", metavar="FILE", help="Reference file: class_name -> distinctive sentences."),
    confusion: Path = typer.Option(..., "--confusion", metavar="FILE", help="Reference file: class_name -> confusion sentences."),
    classes: Optional[Path] = typer.Option(
        None, "--classes", metavar="FILE", help="Match and order classes by this file (ignoring case; underscores = spaces)."
    ),
    class_: Optional[list[str]] = typer.Option(None, "--class", metavar="NAME", help="A class to keep (repeatable)."),
    task: str = typer.Option("", "--task", metavar="TEXT", help="Task text to record in the file."),
    out: Path = typer.Option(Path("attributes.json"), "--out", metavar="FILE", help="Attributes JSON file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing, different --out file."),
    json_out: bool = options.JsonOption,
) -> None:
    """Convert the reference implementation's three JSON files into one attributes file."""
    if out.is_dir():  # before the --force hint below: forcing would not help
        raise OutputNotWritableError(f"{out.name or out} is a folder", "give a file name for --out (inside it, say)")
    refuse_input_as_output(out, [descriptive, distinctive, confusion, classes])  # even with --force
    check_folder_writable(out)  # a folder that cannot be written fails before the files are read
    names = class_names_from(classes, class_, required=False)
    report = import_reference(descriptive, distinctive, confusion, class_names=names, task=task)
    attrs = report.attributes
    unchanged = False
    if out.exists() and not force:
        try:
            existing = load_attributes(out)
        except InvalidInputError:
            existing = None
        if existing is None or not existing.same_content(attrs):
            raise OutputExistsError(out.name)
        unchanged = True
    else:
        save_attributes(attrs, out, force=force)
    if json_out:
        render.emit_json(
            {
                "out": str(out),
                "written": not unchanged,
                "unchanged": unchanged,
                "classes": attrs.class_names,
                "dropped_classes": list(report.dropped_classes),
                "dropped_sentences": report.dropped_sentences,
                "content_hash": attrs.content_hash(),
            }
        )
        return
    verb = f"{out.name} is already up to date" if unchanged else f"wrote {out}"
    render.info(f"{verb}: {len(attrs.classes)} classes imported")
    render.info(fit_hint(out))
    if report.dropped_sentences:
        render.warn(f"dropped {report.dropped_sentences} sentences shorter than 20 characters or repeated")
    if report.dropped_classes:
        render.warn("ignored classes not in the class list: " + ", ".join(report.dropped_classes))
