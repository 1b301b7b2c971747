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


def fit_once(job, schedule: dict) -> dict:
    """The benchmark's own `biomedvr` job under a VR schedule: test accuracy, seconds, VR epochs run and kept."""
    from biomedvr_cli.benchmark.methods import Overrides, run_method

    class ScheduleOverrides(Overrides):
        def recipe(self, name: str):
            return replace(super().recipe(name), **schedule)

    out = run_method("biomedvr", replace(job, overrides=ScheduleOverrides()))
    vr = out.vr or {}
    return {"accuracy": float((out.logits.argmax(1) == out.labels).float().mean()), "seconds": out.fit_seconds,
            "epochs_run": vr.get("epochs_run", 0), "kept": bool(vr.get("kept", False))}


def main() -> None:
    import torch

    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.benchmark.datasets import load_dataset
    from biomedvr_cli.benchmark.methods import JobInputs, Overrides
    from biomedvr_cli.benchmark.protocol import load_suite
    from biomedvr_cli.data import sample_few_shot

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("experiments/tuning-suite.json"))
    parser.add_argument("--shots", default="4,16")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--schedules", default="today=60/5/-,p2=60/5/2,p1=60/5/1,one=1/5/-")
    parser.add_argument("--jsonl", type=Path, default=None, help="also append every fit as one JSON line here")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    schedules = parse_schedules(args.schedules)
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
                    row = fit_once(job, overrides)
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
