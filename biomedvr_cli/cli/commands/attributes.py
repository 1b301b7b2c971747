"""`biomedvr attributes [generate]`: ask an LLM for attribute sentences per class.

The group's `validate` and `import` subcommands live in ``attributes_files``. This module
parses options, calls ``biomedvr_cli.attributes`` and renders. The SDK is
imported by the library only when a request is really sent, so ``--help``, ``--dry-run``,
cache hits and ``validate`` never load it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Optional

import click
import typer

from biomedvr_cli.cli import options

from biomedvr_cli.cli import console as render
from biomedvr_cli.attributes.cache import CACHE_ENV, CorruptEntryError, default_cache_dir, entry_path
from biomedvr_cli.attributes.classlist import class_names_from
from biomedvr_cli.attributes.generate import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_PER_CLASS,
    DEFAULT_TIMEOUT_S,
    MAX_PER_CLASS,
    GenerationPlan,
    GenerationResult,
    GenerationSettings,
    cached_result,
    generate,
    plan_generation,
)
from biomedvr_cli.attributes.prompts import render_retry
from biomedvr_cli.attributes.provider import DEFAULT_MODELS, MODEL_ENV, default_model
from biomedvr_cli.cli.commands import attributes_files
from biomedvr_cli.cli.commands.attributes_files import fit_hint
from biomedvr_cli.errors import UsageError

_HELP = (
    "Ask Claude for descriptive, distinctive and confusion-aware attribute sentences per class, "
    "validate and cache them, and write an attributes JSON file: `attributes generate --classes FILE`, "
    "or the same options without `generate`. Only class names and the task text are sent. "
    "`validate` checks hand-written files and `import` converts the reference implementation's files."
)


class Provider(str, Enum):
    """The platforms the anthropic SDK reaches."""

    anthropic = "anthropic"
    bedrock = "bedrock"
    vertex = "vertex"


def _given_on_command_line(ctx: click.Context) -> list[str]:
    return [
        name
        for name in ctx.params
        # Compared by name: the enum's home module moved between Click releases.
        if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    ]


# Declared once: `attributes generate` and the original `attributes [options]` share them.
_ClassesOption = typer.Option(
    None, "--classes", metavar="FILE", help="UTF-8 text file, one class per line; blank lines and # comments ignored."
)
_ClassOption = typer.Option(
    None, "--class", metavar="NAME", help="A class name; repeat for each class (instead of --classes)."
)
_TaskOption = typer.Option("", "--task", metavar="TEXT", help='What the images are, e.g. "breast ultrasound". Sent to the LLM.')
_OutOption = typer.Option(Path("attributes.json"), "--out", metavar="FILE", help="Attributes JSON file to write.")
_ProviderOption = typer.Option(
    Provider.anthropic, "--provider", help="anthropic (API key), bedrock (AWS) or vertex (Google Cloud)."
)
_ModelOption = typer.Option(
    None,
    "--model",
    metavar="ID",
    help=f"Model id [env {MODEL_ENV}; default {DEFAULT_MODELS['anthropic']} (anthropic), "
    f"{DEFAULT_MODELS['bedrock']} (bedrock), {DEFAULT_MODELS['vertex']} (vertex)].",
    show_default=False,
)
_PerClassOption = typer.Option(
    DEFAULT_PER_CLASS, "--per-class", metavar="N", min=1, max=MAX_PER_CLASS, help="Sentences per set and class."
)
_CacheDirOption = typer.Option(
    None,
    "--cache-dir",
    metavar="DIR",
    help=f"Attributes cache folder [env {CACHE_ENV}; default ~/.cache/biomedvr/attributes].",
    show_default=False,
)
_RefreshOption = typer.Option(False, "--refresh", help="Ask the LLM again even when the cache has an answer.")
_OfflineOption = typer.Option(False, "--offline", help="Never call the LLM; use the cache or fail (exit 5).")
_DryRunOption = typer.Option(
    False, "--dry-run", help="Print exactly what would be sent (system and user text), send nothing."
)
_ForceOption = typer.Option(False, "--force", help="Overwrite an existing, different --out file.")
_MaxRetriesOption = typer.Option(
    DEFAULT_MAX_RETRIES, "--max-retries", metavar="N", min=0, max=10, help="SDK retries on rate limits, overload and network errors."
)
_TimeoutOption = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", metavar="SECONDS", min=0.1, max=3600.0,
                               help="Seconds to wait for each reply (0.1 to 3600).")
_ConcurrencyOption = typer.Option(
    DEFAULT_CONCURRENCY, "--concurrency", metavar="N", min=1, max=16, help="Requests in flight at once (one per class)."
)
_JsonOption = options.JsonOption


@dataclass(frozen=True)
class _GenerateOptions:
    """The generation options as parsed, whichever spelling of the command was used."""

    classes: Optional[Path]
    class_: Optional[list[str]]
    task: str
    out: Path
    provider: Provider
    model: Optional[str]
    per_class: int
    cache_dir: Optional[Path]
    refresh: bool
    offline: bool
    dry_run: bool
    force: bool
    max_retries: int
    timeout: float
    concurrency: int
    json_out: bool


def attributes_main(
    ctx: typer.Context,
    classes: Optional[Path] = _ClassesOption,
    class_: Optional[list[str]] = _ClassOption,
    task: str = _TaskOption,
    out: Path = _OutOption,
    provider: Provider = _ProviderOption,
    model: Optional[str] = _ModelOption,
    per_class: int = _PerClassOption,
    cache_dir: Optional[Path] = _CacheDirOption,
    refresh: bool = _RefreshOption,
    offline: bool = _OfflineOption,
    dry_run: bool = _DryRunOption,
    force: bool = _ForceOption,
    max_retries: int = _MaxRetriesOption,
    timeout: float = _TimeoutOption,
    concurrency: int = _ConcurrencyOption,
    json_out: bool = _JsonOption,
) -> None:
    """Ask Claude for attribute sentences per class and write an attributes JSON file."""
    given = {name: value for name, value in locals().items() if name != "ctx"}  # the parameters, before anything else
    if ctx.invoked_subcommand is not None:
        _refuse_group_options(ctx)
        return
    # `biomedvr attributes --classes ...` (no subcommand) was the first spelling; it stays `generate`.
    _generate_command(_GenerateOptions(**given))


def generate_cmd(
    classes: Optional[Path] = _ClassesOption,
    class_: Optional[list[str]] = _ClassOption,
    task: str = _TaskOption,
    out: Path = _OutOption,
    provider: Provider = _ProviderOption,
    model: Optional[str] = _ModelOption,
    per_class: int = _PerClassOption,
    cache_dir: Optional[Path] = _CacheDirOption,
    refresh: bool = _RefreshOption,
    offline: bool = _OfflineOption,
    dry_run: bool = _DryRunOption,
    force: bool = _ForceOption,
    max_retries: int = _MaxRetriesOption,
    timeout: float = _TimeoutOption,
    concurrency: int = _ConcurrencyOption,
    json_out: bool = _JsonOption,
) -> None:
    """Ask Claude for attribute sentences per class and write an attributes JSON file."""
    _generate_command(_GenerateOptions(**locals()))  # the parameters are exactly the option fields


def _refuse_group_options(ctx: click.Context) -> None:
    """Options typed before a subcommand belong to generation; say where they go instead of ignoring them."""
    given = _given_on_command_line(ctx)
    if given and ctx.invoked_subcommand == "generate":
        raise UsageError(f"--{given[0].rstrip('_').replace('_', '-')} was given before `generate`",
                         "put the options after `generate`")
    if given:
        raise UsageError(
            f"--{given[0].rstrip('_').replace('_', '-')} belongs to `biomedvr attributes`, not to "
            f"`attributes {ctx.invoked_subcommand}`",
            f"put the options after `{ctx.invoked_subcommand}`",
        )


def _generate_command(opts: _GenerateOptions) -> None:
    """Check the options, then show the dry run or generate, write and report."""
    names = class_names_from(opts.classes, opts.class_, required=True)
    assert names is not None
    if opts.refresh and opts.offline:
        raise UsageError("--refresh asks the LLM again and --offline forbids it", "drop one of them")
    settings = GenerationSettings(
        provider=opts.provider.value,
        model=opts.model or default_model(opts.provider.value),
        per_class=opts.per_class,
        timeout=opts.timeout,
        max_retries=opts.max_retries,
        concurrency=opts.concurrency,
    )
    plan = plan_generation(names, opts.task, settings)
    folder = opts.cache_dir.expanduser() if opts.cache_dir is not None else default_cache_dir()
    if opts.dry_run:
        _render_dry_run(plan, _is_cached(plan, folder) and not opts.refresh, opts.json_out)
        return
    result = _generate_with_progress(plan, folder, opts)
    if result.cache_warning:
        render.warn(result.cache_warning)
    if opts.json_out:
        _emit_generated_json(result, plan, folder, opts.out)
        return
    _report_generated(result, plan, folder, opts.out)


def _is_cached(plan: GenerationPlan, folder: Path) -> bool:
    """Whether a run would use the cache; a corrupt entry is not used (a run asks again and replaces it)."""
    try:
        return cached_result(plan, folder) is not None
    except CorruptEntryError:
        return False


def _generate_with_progress(plan: GenerationPlan, folder: Path, opts: _GenerateOptions) -> GenerationResult:
    """Send the requests (or read the cache) behind a progress bar on a terminal."""
    progress = render.progress_bar("count", enabled=not opts.json_out)
    # Held from the start (a second run to the same file fails at once), never the classes file itself;
    # generate() still refuses an existing, different file without --force.
    from biomedvr_cli.atomic import reserve_output

    with reserve_output(opts.out, force=True, inputs=(opts.classes,)), progress:
        classes = len(plan.class_names)
        bar = progress.add_task(f"asking {plan.settings.model} for {classes} classes", total=classes, status="")
        return generate(
            plan,
            cache_dir=folder,
            out=opts.out,
            force=opts.force,
            refresh=opts.refresh,
            offline=opts.offline,
            on_class_done=lambda _name: progress.advance(bar),
        )


def _emit_generated_json(result: GenerationResult, plan: GenerationPlan, folder: Path, out: Path) -> None:
    """--json: one document on stdout with the file's content and how it was obtained."""
    attrs = result.attributes
    render.emit_json(
        {
            "out": str(out),
            "written": result.written,
            "unchanged": result.unchanged,
            "from_cache": result.from_cache,
            "requests_sent": result.requests_sent,
            "cache_file": str(entry_path(folder, plan.cache_key)) if result.in_cache else None,
            "content_hash": attrs.content_hash(),
            "attributes": attrs.to_dict(),
        }
    )


def _report_generated(result: GenerationResult, plan: GenerationPlan, folder: Path, out: Path) -> None:
    """Human output on stderr: what was written and from where, the cache file, and the next command."""
    settings, attrs = plan.settings, result.attributes
    shape = f"{len(attrs.classes)} classes x 3 sets x {settings.per_class} sentences"
    if result.unchanged:
        render.info(f"{out.name} is already up to date ({shape}; from the cache, no API call)")
    elif result.from_cache:
        render.info(f"wrote {out} ({shape}) from the cache: no API call")
    else:
        render.info(
            f"wrote {out} ({shape}) from {settings.model} via {settings.provider}: "
            f"{result.requests_sent} requests"
        )
    if result.in_cache:  # otherwise the warning above said why nothing was cached
        render.info(f"cache: {entry_path(folder, plan.cache_key)}")
    render.info(fit_hint(out))


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
    render.info(f"dry run: {len(plan.requests)} requests shown, none sent")


def register(app: typer.Typer) -> None:
    """Attach the `attributes` command group (`generate`, `validate`, `import`) to ``app``."""
    group = typer.Typer(
        name="attributes",
        help=_HELP,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_show_locals=False,
    )
    # invoke_without_command: `biomedvr attributes --classes FILE` generates, as it always has.
    group.callback(invoke_without_command=True)(attributes_main)
    group.command("generate")(generate_cmd)
    group.command("validate")(attributes_files.validate_cmd)
    group.command("import")(attributes_files.import_cmd)
    app.add_typer(group, name="attributes")
