"""`biomedvr attributes`: ask an LLM for attribute sentences; `validate` and `import` files.

This module parses options, calls ``biomedvr_cli.attributes`` and renders. The SDK is
imported by the library only when a request is really sent, so ``--help``, ``--dry-run``,
cache hits and ``validate`` never load it.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import click
import typer
from rich.markup import escape

from biomedvr_cli.cli import console as render
from biomedvr_cli.attributes import AttributeFile, load_attributes, read_class_list, save_attributes
from biomedvr_cli.attributes.cache import CACHE_ENV, default_cache_dir, entry_path
from biomedvr_cli.attributes.classlist import class_list_from_options
from biomedvr_cli.attributes.generate import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_PER_CLASS,
    DEFAULT_TIMEOUT_S,
    MAX_PER_CLASS,
    GenerationPlan,
    GenerationSettings,
    cached_result,
    generate,
    plan_generation,
)
from biomedvr_cli.attributes.importer import import_reference
from biomedvr_cli.attributes.prompts import render_retry
from biomedvr_cli.attributes.provider import DEFAULT_MODELS, MODEL_ENV, default_model
from biomedvr_cli.errors import InvalidInputError, OutputExistsError, UsageError

_HELP = (
    "Ask Claude for descriptive, distinctive and confusion-aware attribute sentences per class, "
    "validate and cache them, and write an attributes JSON file. Only class names and the task "
    "text are sent. Subcommands check hand-written files and import the reference implementation's files."
)


class Provider(str, Enum):
    """The platforms the anthropic SDK reaches."""

    anthropic = "anthropic"
    bedrock = "bedrock"
    vertex = "vertex"


def _info(message: str) -> None:
    # Not render.info: class names may contain [brackets] that Rich would read as markup,
    # and long paths must not be wrapped mid-word in logs.
    render.console.print(escape(message), soft_wrap=True)


def _warn(message: str) -> None:
    render.console.print("[yellow]warning:[/yellow] " + escape(message), soft_wrap=True)


def _class_names(classes: Optional[Path], class_: Optional[list[str]], *, required: bool) -> Optional[list[str]]:
    if classes is not None and class_:
        raise UsageError("--classes and --class were both given", "use a classes file or repeated --class, not both")
    if classes is not None:
        return read_class_list(classes)
    if class_:
        return class_list_from_options(class_)
    if required:
        raise UsageError(
            "no classes given", "pass --classes classes.txt (one class per line) or repeat --class NAME"
        )
    return None


def _given_on_command_line(ctx: click.Context) -> list[str]:
    return [
        name
        for name in ctx.params
        # Compared by name: the enum's home module moved between Click releases.
        if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    ]


def attributes_main(
    ctx: typer.Context,
    classes: Optional[Path] = typer.Option(
        None, "--classes", metavar="FILE", help="UTF-8 text file, one class per line; blank lines and # comments ignored."
    ),
    class_: Optional[list[str]] = typer.Option(
        None, "--class", metavar="NAME", help="A class name; repeat for each class (instead of --classes)."
    ),
    task: str = typer.Option("", "--task", metavar="TEXT", help='What the images are, e.g. "breast ultrasound". Sent to the LLM.'),
    out: Path = typer.Option(Path("attributes.json"), "--out", metavar="FILE", help="Attributes JSON file to write."),
    provider: Provider = typer.Option(
        Provider.anthropic, "--provider", help="anthropic (API key), bedrock (AWS) or vertex (Google Cloud)."
    ),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        metavar="ID",
        help=f"Model id [env {MODEL_ENV}; default {DEFAULT_MODELS['anthropic']} (anthropic), "
        f"{DEFAULT_MODELS['bedrock']} (bedrock), {DEFAULT_MODELS['vertex']} (vertex)].",
        show_default=False,
    ),
    per_class: int = typer.Option(
        DEFAULT_PER_CLASS, "--per-class", metavar="N", min=1, max=MAX_PER_CLASS, help="Sentences per set and class."
    ),
    cache_dir: Optional[Path] = typer.Option(
        None,
        "--cache-dir",
        metavar="DIR",
        help=f"Attributes cache folder [env {CACHE_ENV}; default ~/.cache/biomedvr/attributes].",
        show_default=False,
    ),
    refresh: bool = typer.Option(False, "--refresh", help="Ask the LLM again even when the cache has an answer."),
    offline: bool = typer.Option(False, "--offline", help="Never call the LLM; use the cache or fail (exit 5)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print exactly what would be sent (system and user text), send nothing."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing, different --out file."),
    max_retries: int = typer.Option(
        DEFAULT_MAX_RETRIES, "--max-retries", metavar="N", min=0, max=10, help="SDK retries on rate limits, overload and network errors."
    ),
    timeout: float = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", metavar="SECONDS", min=0.1, help="Seconds to wait for each reply."),
    concurrency: int = typer.Option(
        DEFAULT_CONCURRENCY, "--concurrency", metavar="N", min=1, max=16, help="Requests in flight at once (one per class)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Ask Claude for attribute sentences per class and write an attributes JSON file."""
    if ctx.invoked_subcommand is not None:
        given = _given_on_command_line(ctx)
        if given:
            raise UsageError(
                f"--{given[0].rstrip('_').replace('_', '-')} belongs to `biomedvr attributes`, not to "
                f"`attributes {ctx.invoked_subcommand}`",
                f"put the options after `{ctx.invoked_subcommand}`",
            )
        return
    names = _class_names(classes, class_, required=True)
    assert names is not None
    if refresh and offline:
        raise UsageError("--refresh asks the LLM again and --offline forbids it", "drop one of them")
    settings = GenerationSettings(
        provider=provider.value,
        model=model or default_model(provider.value),
        per_class=per_class,
        timeout=timeout,
        max_retries=max_retries,
        concurrency=concurrency,
    )
    plan = plan_generation(names, task, settings)
    folder = cache_dir.expanduser() if cache_dir is not None else default_cache_dir()
    if dry_run:
        _render_dry_run(plan, cached_result(plan, folder) is not None and not refresh, json_out)
        return

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn("asking {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=render.console,
        transient=True,
        # A progress bar only helps on a terminal; in logs and pipes it would leave blank lines.
        disable=json_out or not render.console.is_terminal,
    )
    with progress:
        bar = progress.add_task(f"{settings.model} for {len(names)} classes", total=len(names))
        result = generate(
            plan,
            cache_dir=folder,
            out=out,
            force=force,
            refresh=refresh,
            offline=offline,
            on_class_done=lambda _name: progress.advance(bar),
        )
    if result.cache_warning:
        _warn(result.cache_warning)
    attrs = result.attributes
    if json_out:
        render.emit_json(
            {
                "out": str(out),
                "written": result.written,
                "unchanged": result.unchanged,
                "from_cache": result.from_cache,
                "requests_sent": result.requests_sent,
                "cache_file": str(entry_path(folder, plan.cache_key)),
                "content_hash": attrs.content_hash(),
                "attributes": attrs.to_dict(),
            }
        )
        return
    shape = f"{len(attrs.classes)} classes x 3 sets x {settings.per_class} sentences"
    if result.unchanged:
        _info(f"{out.name} is already up to date ({shape}; from the cache, no API call)")
    elif result.from_cache:
        _info(f"wrote {out} ({shape}) from the cache: no API call")
    else:
        _info(
            f"wrote {out} ({shape}) from {settings.model} via {settings.provider}: "
            f"{result.requests_sent} requests"
        )
    _info(f"cache: {entry_path(folder, plan.cache_key)}")


def _render_dry_run(plan: GenerationPlan, cached: bool, json_out: bool) -> None:
    settings = plan.settings
    retry = render_retry(plan.prompts, "<the validation error>", settings.per_class)
    if json_out:
        render.emit_json(
            {
                "dry_run": True,
                "provider": settings.provider,
                "model": settings.model,
                "prompt_version": plan.prompts.version,
                "cached": cached,
                "requests": [
                    {"class": r.class_name, "system": r.system, "user": r.user} for r in plan.requests
                ],
                "reply_schema": plan.prompts.reply_schema,
                "retry_appended_to_user": retry,
            }
        )
        return
    lines = [
        f"# dry run: {len(plan.requests)} requests to {settings.provider} model {settings.model} "
        f"(prompt {plan.prompts.version}); nothing was sent.",
        f"# Each request also carries the reply JSON schema prompts/{plan.prompts.version}/reply.schema.json.",
        "# A reply that fails validation is asked for once more, with this text appended to the user text:",
        "#   " + retry,
    ]
    if cached:
        lines.append("# The cache already holds this answer: a run without --refresh would send nothing.")
    for i, request in enumerate(plan.requests, start=1):
        lines += [
            "",
            f"=== request {i} of {len(plan.requests)}: class {json.dumps(request.class_name, ensure_ascii=False)} ===",
            "--- system ---",
            request.system,
            "--- user ---",
            request.user,
        ]
    typer.echo("\n".join(lines))
    _info(f"dry run: {len(plan.requests)} requests shown, none sent")


def validate_cmd(
    file: Path = typer.Argument(..., metavar="FILE", help="Attributes JSON file to check.", show_default=False),
    classes: Optional[Path] = typer.Option(None, "--classes", metavar="FILE", help="Also check that exactly these classes are present."),
    class_: Optional[list[str]] = typer.Option(None, "--class", metavar="NAME", help="A class that must be present (repeatable)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Check an attributes file (hand-written, imported or generated); exit 3 on the first problem."""
    attrs = load_attributes(file)
    names = _class_names(classes, class_, required=False)
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
    _info(
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
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Convert the reference implementation's three JSON files into one attributes file."""
    names = _class_names(classes, class_, required=False)
    report = import_reference(descriptive, distinctive, confusion, class_names=names, task=" ".join(task.split()))
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
    _info(f"{verb}: {len(attrs.classes)} classes imported")
    if report.dropped_sentences:
        _warn(f"dropped {report.dropped_sentences} sentences shorter than 20 characters or repeated")
    if report.dropped_classes:
        _warn("ignored classes not in the class list: " + ", ".join(report.dropped_classes))


def register(app: typer.Typer) -> None:
    """Attach the `attributes` command group (generate, `validate`, `import`) to ``app``."""
    group = typer.Typer(
        name="attributes",
        help=_HELP,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_show_locals=False,
    )
    group.callback(invoke_without_command=True)(attributes_main)
    group.command("validate")(validate_cmd)
    group.command("import")(import_cmd)
    app.add_typer(group, name="attributes")
