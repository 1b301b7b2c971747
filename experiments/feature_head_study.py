"""Study of the feature head on frozen features (no VR training): seconds per setting.

For each dataset of a suite, K and seed, draws the support and validation sets as the
benchmark does and compares on the test images: attribute zero-shot (the sentence
scorer), the benchmark's linear probe, and the feature head fitted on support +
validation with its cross-validated penalty. Used to design the head on the built-in
tasks (experiments/tuning-suite.json); never run it to tune on the held-out suite.

    OMP_NUM_THREADS=1 python experiments/feature_head_study.py --suite experiments/tuning-suite.json
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch


def main() -> None:
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.benchmark.datasets import load_dataset
    from biomedvr_cli.benchmark.methods import JobInputs, Overrides, run_method
    from biomedvr_cli.benchmark.protocol import load_suite
    from biomedvr_cli.data import sample_few_shot
    from biomedvr_cli.method.feature_head import fit_feature_head
    from biomedvr_cli.method.zero_shot import zero_shot_logits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("experiments/tuning-suite.json"))
    parser.add_argument("--shots", default="1,4,16")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--z", type=float, default=None, help="override feature_head.CLEAR_Z")
    args = parser.parse_args()
    if args.z is not None:
        import biomedvr_cli.method.feature_head as feature_head

        feature_head.CLEAR_Z = args.z
    suite = load_suite(args.suite)
    backbone = load_backbone("sandbox", device="cpu")
    print("| dataset | K | zs-attributes | linear-probe | feature head | chosen penalties |")
    print("|---|---|---|---|---|---|")
    for spec in suite.datasets:
        data = load_dataset(spec)
        sets = data.attributes.sets
        for shots in (int(s) for s in args.shots.split(",")):
            rows = {"zs": [], "probe": [], "head": []}
            chosen = []
            for seed in range(args.seeds):
                split = sample_few_shot(data.pool, data.classes, shots, seed=seed, val_shots=None)
                xs, ys = data.features(backbone, split.train + split.val)
                tx, ty = data.features(backbone, data.test)
                z_train = zero_shot_logits(backbone, xs, data.classes, sets)
                z_test = zero_shot_logits(backbone, tx, data.classes, sets)
                rows["zs"].append(float((z_test.argmax(1) == ty).float().mean()))
                job = JobInputs(data, backbone, split.train, split.val, shots, seed, Overrides())
                probe = run_method("linear-probe", job)
                rows["probe"].append(float((probe.logits.argmax(1) == probe.labels).float().mean()))
                fit = fit_feature_head(z_train, xs, ys, len(data.classes), max_folds=args.folds, seed=seed)
                logits = fit.scale * z_test + tx @ fit.weight.t() + fit.bias
                rows["head"].append(float((logits.argmax(1) == ty).float().mean()))
                chosen.append("inf" if math.isinf(fit.penalty) else f"{fit.penalty:g}")
            cells = [f"{100 * statistics.mean(v):.1f}" for v in rows.values()]
            print(f"| {spec.name} | {shots} | " + " | ".join(cells) + f" | {', '.join(chosen)} |", flush=True)


if __name__ == "__main__":
    with torch.no_grad():
        main()
