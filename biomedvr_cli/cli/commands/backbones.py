"""``biomedvr backbones``: the presets and whether each is cached; ``backbones export``: an offline folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from biomedvr_cli.cli import options

_HELP = ("List backbone presets and whether their weights are cached on this machine (downloads nothing); "
         "`biomedvr backbones export NAME DIR` writes a folder that loads offline.")


def backbones(ctx: typer.Context, json_out: bool = options.JsonOption) -> None:
    """List backbone presets and whether their weights are on this machine (downloads nothing)."""
    if ctx.invoked_subcommand is not None:
        return
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.backbones import load_presets, parse_backbone
    from biomedvr_cli.backbones.loader import describe_availability

    rows = []
    for name in load_presets():
        spec = parse_backbone(name)
        available, note = describe_availability(spec)
        rows.append({"name": name, "model": spec.model, "pretrained": spec.pretrained, "available": available,
                     "note": note, "description": spec.preset.description if spec.preset else ""})
    if json_out:
        render.emit_json({"backbones": rows})
        return
    render.rows_table("backbone presets", ["name", "model", "cached", "note"],
                      [[r["name"], r["model"] + (f" ({r['pretrained']})" if r["pretrained"] else ""),
                        "yes" if r["available"] else "no", r["note"]] for r in rows])
    render.info("Also accepted: hf-hub:ORG/REPO, local-dir:FOLDER, MODEL:TAG (open_clip), MODEL:WEIGHTS_FILE.")
    render.info("Missing weights download on first use (--offline or HF_HUB_OFFLINE=1 turn that off); "
                "`biomedvr backbones export NAME DIR` writes a folder for machines without a network.")


def export(
    name: str = typer.Argument(..., metavar="NAME", help="Backbone: a preset, hf-hub:ORG/REPO, MODEL:TAG, MODEL:WEIGHTS or local-dir:FOLDER."),
    folder: Path = typer.Argument(..., metavar="DIR", help="Folder to write (created; must not exist or be empty, unless --force)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing folder (only once the new one is complete)."),
    allow_download: Optional[bool] = options.AllowDownloadOption,
    json_out: bool = options.JsonOption,
) -> None:
    """Write a self-contained backbone folder (config, weights, text tower, tokenizer, checksums) for --backbone local-dir:DIR.

    Run it on a connected machine, copy DIR to the machine without a network, and pass
    --backbone local-dir:DIR there: it needs no Hugging Face cache and no network.
    """
    from biomedvr_cli.backbones.downloads import human_size
    from biomedvr_cli.backbones.export import export_backbone
    from biomedvr_cli.cli import console as render

    result = export_backbone(name, folder, force=force, allow_download=allow_download)
    if json_out:
        render.emit_json(result.to_dict())
        return
    render.info(f"wrote {folder} ({len(result.files)} files, {human_size(result.total_bytes)}; "
                f"backbone {result.source}, fingerprint {result.fingerprint})")
    render.info(f"use it with --backbone local-dir:{folder} (no network or Hugging Face cache needed); "
                f"after copying, check it with `sha256sum -c SHA256SUMS` inside the folder")


def register(app: typer.Typer) -> None:
    """Attach the ``backbones`` group: the list (no subcommand) and ``export``."""
    group = typer.Typer(name="backbones", help=_HELP, add_completion=False, rich_markup_mode=None,
                        pretty_exceptions_show_locals=False)
    # invoke_without_command: plain `biomedvr backbones` lists the presets, as it always has.
    group.callback(invoke_without_command=True)(backbones)
    group.command("export")(export)
    app.add_typer(group, name="backbones")
