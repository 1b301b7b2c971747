"""``biomedvr sandbox``: the synthetic world, its tasks, pretraining and measured properties.

Parses options, calls ``biomedvr_cli.sandbox`` and renders; torch is imported lazily.
"""

from __future__ import annotations

from pathlib import Path

import typer

from biomedvr_cli.cli import options
from biomedvr_cli.sandbox.pretrain import PretrainConfig

# Seeds as pretraining takes them (numpy refuses negative seeds); the range Click checks.
SEED_MAX = 2**32 - 1
# Caption retrieval ranks each image's caption among its own and 9 others', so it needs 10 images.
ALIGN_MIN = 10

sandbox_app = typer.Typer(
    name="sandbox",
    help="The built-in synthetic microscopy world, its tasks and its tiny pretrained model.",
    no_args_is_help=True,
)


# A sandbox folder is for trying the tool: 100,000 images a class (about 1.5 GB a class at 96 px) is
# far past any use, and a mistyped count would otherwise fill the disk before it is noticed.
MAX_MAKE_PER_CLASS = 100_000


@sandbox_app.command("make")
def make(
    out: Path = typer.Argument(..., help="Folder to create (train/, test/, classes.txt, attributes.json)."),
    task: str = typer.Option(None, "--task", help="Built-in task name (see `biomedvr sandbox tasks`)."),
    task_file: Path = typer.Option(None, "--task-file", help="A task JSON file of your own."),
    per_class: int = typer.Option(16, "--train-per-class", "--per-class", min=1, max=MAX_MAKE_PER_CLASS,
                                  help="Training images per class (--per-class is the old name)."),
    test_per_class: int = typer.Option(50, "--test-per-class", min=0, max=MAX_MAKE_PER_CLASS,
                                       help="Test images per class."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of the generator (same seed, same images)."),
    shift: options.choice(options.SANDBOX_SHIFTS) = typer.Option(
        "none", "--shift", help="Domain shift on train and test: none, stain, blur, noise, all or default (the task's)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    json_out: bool = options.JsonOption,
) -> None:
    """Write a task as an image-folder dataset with its attributes file."""
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.sandbox.dataset import make_task_dataset
    from biomedvr_cli.sandbox.tasks import load_builtin_task, load_task_file

    if (task is None) == (task_file is None):
        raise UsageError("give exactly one of --task and --task-file", "e.g. --task blood-smear")
    # --task only ever names a built-in task and --task-file only ever a file, whatever its suffix.
    if task is not None:
        check_builtin_task(task)
    spec = load_builtin_task(task) if task is not None else load_task_file(task_file)
    summary = make_task_dataset(out, spec, per_class, test_per_class, seed, shift, force)
    if json_out:
        render.emit_json(summary)
        return
    render.info(
        f"wrote {summary['train_images']} train and {summary['test_images']} test images of "
        f"{len(summary['classes'])} classes to {out} (task {spec.name}, shift {summary['shift']}, seed {seed})"
    )


def check_builtin_task(name: str) -> None:
    """``--task`` names a built-in task; another name is a bad option value (exit 2), not bad input."""
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.sandbox.tasks import builtin_task_names

    names = builtin_task_names()
    if name not in names:
        raise UsageError(f"--task {name[:60]!r} is not a built-in task",
                         f"built-in tasks: {', '.join(names)}; a task file of your own goes to --task-file")


@sandbox_app.command("tasks")
def tasks(json_out: bool = options.JsonOption) -> None:
    """List the built-in tasks."""
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.sandbox.tasks import list_tasks

    rows = [
        {"name": t.name, "classes": t.class_names, "confusion_pairs": [list(p) for p in t.confusion_pairs],
         "default_shift": t.default_shift, "description": t.description}
        for t in list_tasks()
    ]
    if json_out:
        render.emit_json({"tasks": rows})
        return
    render.rows_table(
        "built-in sandbox tasks",
        ["name", "classes", "confusion pairs", "default shift"],
        [[r["name"], ", ".join(r["classes"]), "; ".join(" / ".join(p) for p in r["confusion_pairs"]), r["default_shift"]]
         for r in rows],
    )


# The one source of pretraining defaults; the module imports only the standard library,
# so --help stays fast.
_PRETRAIN = PretrainConfig()


@sandbox_app.command("pretrain")
def pretrain(
    out: Path = typer.Option(
        ..., "--out", help="Weights file to write (safetensors, fp16); an existing file needs --force."
    ),
    steps: int = typer.Option(_PRETRAIN.steps, "--steps", help="Optimiser steps (the cosine schedule spans them)."),
    minutes: float = typer.Option(
        _PRETRAIN.minutes, "--minutes", help="Wall-clock budget: the cosine schedule compresses to end by then."
    ),
    seed: int = typer.Option(_PRETRAIN.seed, "--seed", help="Seed of the initialisation and of every generated batch."),
    batch_size: int = typer.Option(_PRETRAIN.batch_size, "--batch-size", help="Image-caption pairs per step."),
    lr: float = typer.Option(_PRETRAIN.lr, "--lr", help="Peak learning rate of AdamW."),
    warmup: int = typer.Option(_PRETRAIN.warmup, "--warmup", help="Linear warmup steps before the cosine."),
    weight_decay: float = typer.Option(
        _PRETRAIN.weight_decay, "--weight-decay", help="AdamW weight decay (matrices only)."
    ),
    hard_fraction: float = typer.Option(
        _PRETRAIN.hard_fraction, "--hard-fraction", help="Share of each batch drawn as hard-negative caption pairs."
    ),
    pair_weight: float = typer.Option(
        _PRETRAIN.pair_weight, "--pair-weight", help="Weight of the two-way loss inside each hard-negative pair."
    ),
    aux_weight: float = typer.Option(
        _PRETRAIN.aux_weight, "--aux-weight", help="Weight of the per-family heads' loss (heads are not saved)."
    ),
    zoom_min: float = typer.Option(
        _PRETRAIN.zoom_min, "--zoom-min", help="Scale augmentation: smallest zoom an image is drawn at."
    ),
    zoom_max: float = typer.Option(
        _PRETRAIN.zoom_max, "--zoom-max", help="Scale augmentation: largest zoom an image is drawn at."
    ),
    frame_probability: float = typer.Option(
        _PRETRAIN.frame_probability, "--frame-probability",
        help="Share of images shrunk into a constant-colour frame or letterbox, as web images come.",
    ),
    frame_max_fraction: float = typer.Option(
        _PRETRAIN.frame_max_fraction, "--frame-max-fraction", help="Widest frame, as a fraction of the image side."
    ),
    threads: int = typer.Option(_PRETRAIN.threads, "--threads", help="torch threads for the model step."),
    workers: int = typer.Option(
        _PRETRAIN.workers, "--workers", help="DataLoader processes drawing batches (0: draw in the main process)."
    ),
    eval_every: int = typer.Option(
        _PRETRAIN.eval_every, "--eval-every", help="Steps between progress measurements (0: only at the end)."
    ),
    save_every_minutes: float = typer.Option(
        _PRETRAIN.save_every_minutes, "--save-every-minutes", help="Minutes between checkpoints (OUT.partial) during the run; OUT is written at the end."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT if it exists (the shipped weights included)."),
    json_out: bool = options.JsonOption,
) -> None:
    """Contrastively pretrain the sandbox model from scratch on generated image-caption pairs."""
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.sandbox.pretrain import pretrain as run

    cfg = PretrainConfig(
        steps=steps, minutes=minutes, seed=seed, batch_size=batch_size, lr=lr, warmup=warmup,
        weight_decay=weight_decay, hard_fraction=hard_fraction, pair_weight=pair_weight, aux_weight=aux_weight,
        zoom_min=zoom_min, zoom_max=zoom_max, frame_probability=frame_probability,
        frame_max_fraction=frame_max_fraction, threads=threads, workers=workers, eval_every=eval_every,
        save_every_minutes=save_every_minutes,
    )

    def progress(info: dict) -> None:
        if "retrieval_top1_of10" in info and not json_out:
            render.info(
                f"step {info['step'] + 1}/{steps}  loss {info['loss']:.3f}  retrieval {info['retrieval_top1_of10']:.2f}"
                f"  family zero-shot {info['family_zero_shot_mean']:.2f}  ({info['elapsed_s'] / 60:.1f} min)"
            )

    summary = run(out, cfg, progress=progress, force=force)
    if json_out:
        render.emit_json(summary)
        return
    render.info(f"wrote {out}: {summary['steps_done']} steps in {summary['wall_seconds'] / 60:.1f} min")


@sandbox_app.command("properties")
def properties(
    weights: Path = typer.Option(None, "--weights", help="Weights to measure instead of the shipped ones."),
    n_per_class: int = typer.Option(100, "--test-per-class", "--per-class", min=1,
                                    help="Test images per class for the task properties (--per-class is the old name)."),
    n_align: int = typer.Option(1000, "--n-align", min=ALIGN_MIN,
                                help=f"Images for the in-world alignment properties (at least {ALIGN_MIN}: "
                                     "retrieval picks each image's true caption among 10)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of the measurement images."),
    published_vr: Path = typer.Option(
        None, "--published-vr", metavar="RESULTS",
        help="Also judge property (b) from a benchmark results folder: AR and AttrVR as published, 16 shots, "
             "shifted built-in tasks (made by `biomedvr benchmark --suite experiments/published-vr-suite.json`)."),
    json_out: bool = options.JsonOption,
) -> None:
    """Measure the shipped model's properties (alignment, per-task zero-shot, shift drop, confusions)."""
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.sandbox.properties import load_default_backbone, measure_properties

    if published_vr is not None and weights is not None:
        from biomedvr_cli.errors import UsageError

        raise UsageError("--published-vr judges the shipped weights (the benchmark's `sandbox` backbone), not --weights",
                         "drop --weights, or install the weights as the shipped ones and rerun the benchmark")
    backbone = load_default_backbone(weights)
    judged = _judge_published_vr(published_vr, backbone.fingerprint) if published_vr is not None else None
    report = measure_properties(backbone, n_align=n_align, n_per_class=n_per_class, seed=seed,
                                progress=None if json_out else (lambda m: render.info(f"measuring {m} ...")))
    if judged is not None:
        report["published_vr"] = judged
        report["checks"] += judged["checks"]
    if json_out:
        render.emit_json(report)
        return
    a = report["alignment"]
    render.rows_table(
        "in-world alignment",
        ["property", "value"],
        [["caption retrieval top-1 of 10", a["retrieval_top1_of10"]]]
        + [[f"zero-shot: {f}" + ("" if f in a["kept_families"] else " (dropped: not seen)"), v]
           for f, v in a["family_zero_shot"].items()]
        + [["zero-shot: mean of kept families", a["family_zero_shot_mean"]]],
    )
    render.rows_table(
        "tasks (attribute zero-shot = k-nearest Des+Dist sentences, k=3)",
        ["task", "chance", "class-name ZS", "attribute ZS", "attribute ZS, shift", "drop",
         "padding start (attribute ZS), no shift / shift", "most confused (no shift)"],
        [[t["task"], t["chance"], t["class_name_zero_shot_no_shift"], t["attribute_zero_shot_no_shift"],
          t["attribute_zero_shot_shift"], t["shift_drop"],
          f"{t['padding_attribute_zero_shot_no_shift']:.3f} / {t['padding_attribute_zero_shot_shift']:.3f}",
          "; ".join(f"{' / '.join(p['pair'])} ({p['rate']:.2f})" for p in t["most_confused_no_shift"])]
         for t in report["tasks"]],
    )
    if judged is not None:
        render.rows_table(
            f"AR and AttrVR as published, 16 shots, mean over {', '.join(judged['datasets'])} and seeds "
            f"(epochs: {', '.join(f'{m} {e}' for m, e in judged['epochs'].items())})",
            ["method", "jobs", "start (untrained padding)", "end (last epoch)", "gain"],
            [[r["method"], r["jobs"], "-" if r["start_accuracy"] is None else r["start_accuracy"], r["end_accuracy"],
              "-" if r["gain"] is None else r["gain"]] for r in judged["rows"]])
    render.rows_table("checks", ["property", "value", "target", "ok"],
                      [[c["name"], c["value"], c["target"], "-" if c["ok"] is None else "yes" if c["ok"] else "NO"]
                       for c in report["checks"]])


def _judge_published_vr(results: Path, fingerprint: str) -> dict:
    """Property (b) from a benchmark folder's summary.json, checked before minutes of measuring."""
    from biomedvr_cli.errors import InvalidInputError
    from biomedvr_cli.attributes.textfile import read_user_json
    from biomedvr_cli.sandbox.published_vr import judge_published_vr, suggested_command
    from biomedvr_cli.sandbox.tasks import list_tasks

    summary_path = results / "summary.json"
    if not summary_path.is_file():
        raise InvalidInputError(f"no summary.json in the --published-vr folder {results.name or str(results)!r}",
                                f"pass a benchmark --out folder; make one with: {suggested_command()}")
    summary = read_user_json(summary_path, missing_hint="pass a benchmark --out folder",
                             fix_hint="rerun the benchmark into a fresh folder")
    return judge_published_vr(summary, {t.name: t.default_shift for t in list_tasks()}, fingerprint)


def register(app: typer.Typer) -> None:
    """Attach the ``sandbox`` group."""
    app.add_typer(sandbox_app, name="sandbox")
