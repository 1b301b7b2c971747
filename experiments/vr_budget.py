"""How much VR training the default fit should spend: accuracy, time and kept epochs per schedule.

For each dataset of a suite, K and seed, draws the support and validation sets as the
benchmark does and fits the default BioMedVR method (equal labels: a kept VR state is
retrained on support + validation, the feature head is cross-validated over all) under
several VR schedules given as NAME=EPOCHS/EVAL_EVERY/PATIENCE (PATIENCE "-" for none):

    OMP_NUM_THREADS=2 python experiments/vr_budget.py --suite experiments/tuning-suite.json \\
        --shots 4,16 --schedules today=60/5/-,p2=60/5/2,p1=60/5/1,one=1/5/-

Prints one markdown row per dataset, K and schedule: test accuracy (mean over seeds), fit
seconds (training and selection, as `fit` reports them), VR epochs run and how often a
trained VR state was kept. Design on the built-in tasks only; the held-out suites judge.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path


def parse_schedules(text: str) -> dict[str, dict]:
    """NAME=EPOCHS/EVAL_EVERY/PATIENCE,... as recipe overrides."""
    out = {}
    for item in text.split(","):
        name, spec = item.split("=")
        epochs, every, patience = spec.split("/")
        out[name] = {"epochs": int(epochs), "eval_every": int(every),
                     "patience": None if patience == "-" else int(patience)}
    return out


def fit_once(job, recipe) -> dict:
    """One default fit on the job's support + validation images; test accuracy, seconds and the VR report."""
    from biomedvr_cli.benchmark.methods import METHODS, _CachedTexts
    from biomedvr_cli.method.build import build_head
    from biomedvr_cli.method.training import predict_logits, train_head

    spec = METHODS["biomedvr"]
    train_x, train_y = job.pixels("train")
    val_x, val_y = job.pixels("val")
    test_x, test_y = job.pixels("test")
    start = time.perf_counter()
    head, _ = build_head(_CachedTexts(job.backbone, job.text_cache), job.dataset.classes, job.sets(spec), spec.config,
                         seed=job.seed)
    result = train_head(head, job.backbone.encode_images, train_x, train_y, val_x, val_y, recipe,
                        seed=job.seed, device=job.backbone.device, shots=job.shots)
    seconds = time.perf_counter() - start
    logits = predict_logits(head, job.backbone.encode_images, test_x, device=job.backbone.device)
    vr = result.vr.to_dict() if result.vr is not None else {}
    curve = [round(h["val_accuracy"], 3) for h in result.history if "val_accuracy" in h]
    return {"accuracy": float((logits.argmax(1) == test_y).float().mean()), "seconds": seconds,
            "epochs_run": vr.get("epochs_run", 0), "kept": bool(vr.get("kept", False)), "val_curve": curve}


def main() -> None:
    import torch

    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.benchmark.datasets import load_dataset
    from biomedvr_cli.benchmark.methods import JobInputs, Overrides
    from biomedvr_cli.benchmark.protocol import load_suite
    from biomedvr_cli.data import sample_few_shot
    from biomedvr_cli.method.recipes import load_recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("experiments/tuning-suite.json"))
    parser.add_argument("--shots", default="4,16")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--schedules", default="today=60/5/-,p2=60/5/2,p1=60/5/1,one=1/5/-")
    parser.add_argument("--jsonl", type=Path, default=None, help="also append every fit as one JSON line here")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    schedules = parse_schedules(args.schedules)
    base = load_recipe("fast")
    suite = load_suite(args.suite)
    backbone = load_backbone("sandbox", device="cpu")
    print("| dataset | K | schedule | accuracy | fit s | VR epochs run | VR kept |")
    print("|---|---|---|---|---|---|---|")
    for spec in suite.datasets:
        data = load_dataset(spec)
        for shots in (int(s) for s in args.shots.split(",")):
            runs: dict[str, list[dict]] = {name: [] for name in schedules}
            for seed in range(args.seeds):
                split = sample_few_shot(data.pool, data.classes, shots, seed=seed, val_shots=None)
                job = JobInputs(data, backbone, split.train, split.val, shots, seed, Overrides())
                for name, overrides in schedules.items():  # interleaved, so load changes hit every schedule
                    row = fit_once(job, replace(base, **overrides))
                    runs[name].append(row)
                    if args.jsonl is not None:
                        with args.jsonl.open("a", encoding="utf-8") as fh:
                            fh.write(json.dumps({"dataset": spec.name, "shots": shots, "seed": seed,
                                                 "schedule": name, **row}) + "\n")
            for name, rows in runs.items():
                acc = 100 * statistics.mean(r["accuracy"] for r in rows)
                secs = statistics.mean(r["seconds"] for r in rows)
                epochs = statistics.mean(r["epochs_run"] for r in rows)
                kept = sum(r["kept"] for r in rows)
                print(f"| {spec.name} | {shots} | {name} | {acc:.1f} | {secs:.1f} | {epochs:.1f} | {kept}/{len(rows)} |",
                      flush=True)


if __name__ == "__main__":
    main()
