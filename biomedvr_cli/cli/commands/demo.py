"""``biomedvr demo``: the whole pipeline on the built-in sandbox in a few minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from biomedvr_cli.cli import options


def demo(
    workdir: Optional[Path] = typer.Option(
        None, "--workdir",
        help="Folder for the generated task, adapter and images (default: a new folder under the system's temporary "
             "folder; where it went is printed)."),
    task: str = typer.Option("blood-smear", "--task", help="Built-in sandbox task (`biomedvr sandbox tasks` lists them)."),
    shots: int = typer.Option(8, "--shots", min=1, max=20,
                              help="Training images per class (the demo makes 24 a class; min(K, 4) more are kept for validation)."),
    seed: int = typer.Option(0, "--seed", min=0, max=options.MAX_SEED, help="Seed for the task images, the few-shot draw and training."),
    force: bool = typer.Option(False, "--force", help="Reuse an existing working folder."),
    json_out: bool = options.JsonOption,
) -> None:
    """Make a sandbox task, fit 8 shots, eval, predict one image; print each equivalent command."""
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.atomic import check_folder_writable
    from biomedvr_cli.pipeline.demo import run_demo

    from biomedvr_cli.cli.commands.sandbox import check_builtin_task

    check_builtin_task(task)  # a bad option value: exit 2, before any folder is made
    if workdir is not None:
        check_folder_writable(workdir)  # before generating anything
    with render.EpochProgress("fit") as bar:
        result = run_demo(workdir, task=task, shots=shots, seed=seed, force=force, progress=bar.update, notify=render.info)
    if json_out:
        render.emit_json(result.to_dict())
        return
    render.rows_table(
        f"sandbox task {task!r}, {shots} shots, test images (seconds: {result.seconds:.0f})",
        ["method", "accuracy"],
        [["zero-shot, class names", result.zero_shot_class_names],
         ["zero-shot, attributes (k-nearest)", result.zero_shot_attributes],
         ["BioMedVR adapter (fit)", result.adapted["accuracy"]]],
    )
    top = result.prediction.get("top", [])
    if top:
        render.info(f"predict: {top[0]['class']} ({top[0]['probability']:.3f}); true class {result.prediction['true_class']}")
    render.info("The same steps as commands:")
    for command in result.commands:
        render.info(f"  {command}")
    render.info(f"The task, adapter and images are in {result.workdir} (delete the folder when done).")


def register(app: typer.Typer) -> None:
    """Attach ``demo``."""
    app.command("demo")(demo)
