"""``biomedvr backbones``: the presets and whether each is available offline."""

from __future__ import annotations

import typer

from biomedvr_cli.cli import options


def backbones(json_out: bool = options.JsonOption) -> None:
    """List backbone presets and whether their weights are on this machine (downloads nothing)."""
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
    render.rows_table("backbone presets", ["name", "model", "offline", "note"],
                      [[r["name"], r["model"] + (f" ({r['pretrained']})" if r["pretrained"] else ""),
                        "yes" if r["available"] else "no", r["note"]] for r in rows])
    render.info("Also accepted: hf-hub:ORG/REPO, local-dir:FOLDER, MODEL:TAG (open_clip), MODEL:WEIGHTS_FILE.")


def register(app: typer.Typer) -> None:
    """Attach ``backbones``."""
    app.command("backbones")(backbones)
