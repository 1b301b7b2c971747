"""Compare training recipes on the sandbox tasks: validation accuracy and wall time.

How the default recipe (`fast`) was chosen: it must reach at least the `paper` recipe's
validation accuracy on the built-in sandbox tasks in at most a quarter of its wall time.

    .venv/bin/python experiments/recipe_search.py --recipes paper,fast --seeds 0,1,2 --shots 16

Each (task, recipe, seed) fits a BioMedVR head (defaults otherwise) on K shots with the
task's default shift, selects on the validation split as `fit` does, and reports the
selected state's validation accuracy, test accuracy (for information only; never used
for selection) and fit seconds. Extra candidates: `--candidate NAME:key=value,...` builds a
recipe from `fast` with overrides, e.g. `--candidate adam:optimizer=adamw,lr=0.1,epochs=60`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from biomedvr_cli.backbones import load_backbone
from biomedvr_cli.pipeline.fit import ResolvedAttributes, build_head
from biomedvr_cli.method.head import MethodConfig
from biomedvr_cli.method.recipes import Recipe, load_recipe
from biomedvr_cli.sandbox.tasks import generate_task_arrays, load_task
from biomedvr_cli.method.training import predict_logits, train_head


def _parse_candidate(text: str) -> Recipe:
    name, _, spec = text.partition(":")
    overrides: dict = {"name": name}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        field_type = type(getattr(load_recipe("fast"), key))
        overrides[key] = field_type(value) if field_type is not bool else value.lower() in ("1", "true", "yes")
    return load_recipe("fast").with_overrides(**overrides)


def _attribute_sets(task) -> ResolvedAttributes:
    data = json.loads(Path(task.attributes_path()).read_text())
    sets = {c: {k: list(v) for k, v in data["classes"][c].items()} for c in task.class_names}
    return ResolvedAttributes(sets, "file", data.get("task", ""), None)


def _to_tensor(images) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def run(task_name: str, recipe: Recipe, seed: int, shots: int, val_shots: int, backbone, shift: str,
        method: MethodConfig | None = None) -> dict:
    task = load_task(task_name)
    train, train_y = generate_task_arrays(task, shots + val_shots, seed, shift, split="train")
    test, test_y = generate_task_arrays(task, 100, 0, shift, split="test")
    train_t, train_y = _to_tensor(train), torch.from_numpy(train_y)
    # First `shots` images of each class train, the rest validate (the generator is per-class blocks).
    per = shots + val_shots
    idx = torch.arange(len(train_y))
    is_train = (idx % per) < shots
    head, _ = build_head(backbone, task.class_names, _attribute_sets(task), method or MethodConfig())
    start = time.perf_counter()
    result = train_head(head, backbone.encode_images, train_t[is_train], train_y[is_train], train_t[~is_train],
                        train_y[~is_train], recipe, seed=seed, device=backbone.device, shots=shots)
    seconds = time.perf_counter() - start
    logits = predict_logits(head, backbone.encode_images, _to_tensor(test), device=backbone.device)
    test_acc = float((logits.argmax(1) == torch.from_numpy(test_y)).float().mean())
    return {"task": task_name, "recipe": recipe.name, "vr": head.config.vr, "seed": seed, "val_accuracy": result.val_accuracy,
            "test_accuracy": test_acc, "seconds": seconds, "selected_epoch": result.selected_epoch}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="blood-smear,cervical-cytology")
    parser.add_argument("--recipes", default="paper,fast")
    parser.add_argument("--candidate", action="append", default=[])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--val-shots", type=int, default=4)
    parser.add_argument("--shift", default="default")
    parser.add_argument("--vr", default=None, help="VR kind for every run (default: MethodConfig's default)")
    parser.add_argument("--backbone", default="sandbox")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    backbone = load_backbone(args.backbone, device="cpu")
    method = MethodConfig(vr=args.vr) if args.vr else MethodConfig()
    recipes = [load_recipe(r) for r in args.recipes.split(",") if r] + [_parse_candidate(c) for c in args.candidate]
    rows = []
    for task_name in args.tasks.split(","):
        for recipe in recipes:
            for seed in (int(s) for s in args.seeds.split(",")):
                row = run(task_name, recipe, seed, args.shots, args.val_shots, backbone, args.shift, method)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"\n{'task':20s} {'recipe':12s} {'val acc':>8s} {'test acc':>8s} {'seconds':>8s}")
    for task_name in args.tasks.split(","):
        for recipe in recipes:
            sel = [r for r in rows if r["task"] == task_name and r["recipe"] == recipe.name]
            print(f"{task_name:20s} {recipe.name:12s} {statistics.mean(r['val_accuracy'] for r in sel):8.3f} "
                  f"{statistics.mean(r['test_accuracy'] for r in sel):8.3f} {statistics.mean(r['seconds'] for r in sel):8.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
