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
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--z", type=float, default=None, help="override MethodConfig.clear_z")
    parser.add_argument("--test", default="either", choices=("either", "accuracy"),
                        help="how a head must beat the sentence scores (fit_feature_head's test)")
    parser.add_argument("--likelihood-min", type=int, default=None,
                        help="override MethodConfig.head_likelihood_min (images a class for the log-loss check)")
    parser.add_argument("--penalties", default=None,
                        help="override MethodConfig.head_penalties (comma-separated, strongest first)")
    parser.add_argument("--noise-draws", type=int, default=0,
                        help="instead of the suite: how often a head is chosen on pure-noise features")
    args = parser.parse_args()
    args.config = head_config(args)
    if args.noise_draws:
        noise_check(args)
        return
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
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                split = sample_few_shot(data.pool, data.classes, shots, seed=seed, val_shots=None)
                xs, ys = data.features(backbone, split.train + split.val)
                tx, ty = data.features(backbone, data.test)
                z_train = zero_shot_logits(backbone, xs, data.classes, sets)
                z_test = zero_shot_logits(backbone, tx, data.classes, sets)
                rows["zs"].append(float((z_test.argmax(1) == ty).float().mean()))
                job = JobInputs(data, backbone, split.train, split.val, shots, seed, Overrides())
                probe = run_method("linear-probe", job)
                rows["probe"].append(float((probe.logits.argmax(1) == probe.labels).float().mean()))
                fit = fit_feature_head(z_train, xs, ys, len(data.classes), seed=seed, config=args.config)
                logits = fit.scale * z_test + tx @ fit.weight.t() + fit.bias
                rows["head"].append(float((logits.argmax(1) == ty).float().mean()))
                chosen.append("inf" if math.isinf(fit.penalty) else f"{fit.penalty:g}")
            cells = [f"{100 * statistics.mean(v):.1f}" for v in rows.values()]
            print(f"| {spec.name} | {shots} | " + " | ".join(cells) + f" | {', '.join(chosen)} |", flush=True)


def head_config(args: argparse.Namespace):
    """The method config with this study's head settings (the defaults unless an option overrides one)."""
    from dataclasses import replace

    from biomedvr_cli.method.config import MethodConfig

    penalties = tuple(float(p) for p in args.penalties.split(",")) if args.penalties else None
    overrides = {"clear_z": args.z, "head_likelihood_min": args.likelihood_min, "head_penalties": penalties}
    return replace(MethodConfig(head_folds=args.folds, head_test=args.test),
                   **{k: v for k, v in overrides.items() if v is not None})


def noise_check(args: argparse.Namespace) -> None:
    """Heads chosen on features that carry no information, over a start that is right about half the time.

    The start's scores are scaled like the sandbox's sentence scores (logit scale about 10
    times a cosine gap), per class count and images per class as in the built-in tasks.
    """
    import torch.nn.functional as F

    from biomedvr_cli.method.feature_head import fit_feature_head

    print("| classes | images a class | heads chosen | draws | test accuracy change where chosen (points) |")
    print("|---|---|---|---|---|")

    def draw_task(gen: torch.Generator, classes: int, count: int) -> tuple[torch.Tensor, ...]:
        labels = torch.arange(count) % classes
        features = F.normalize(torch.randn(count, 64, generator=gen), dim=1)
        right = torch.rand(count, 1, generator=gen) < 0.5
        offsets = torch.randn(count, classes, generator=gen) + 3.0 * F.one_hot(labels, classes) * right
        return offsets, features, labels

    for classes in (4, 6):
        for per_class in (2, 5, 8, 20):  # 8 and 20: K = 4 and 16 with their validation images
            changes = []
            for draw in range(args.noise_draws):
                gen = torch.Generator().manual_seed(1000 * classes + 10 * per_class + draw)
                offsets, features, labels = draw_task(gen, classes, classes * per_class)
                fit = fit_feature_head(offsets, features, labels, classes, seed=draw, config=args.config)
                if not math.isinf(fit.penalty):
                    t_offsets, t_features, t_labels = draw_task(gen, classes, 2000)
                    head = fit.scale * t_offsets + t_features @ fit.weight.t() + fit.bias
                    changes.append(100 * float((head.argmax(1) == t_labels).float().mean()
                                               - (t_offsets.argmax(1) == t_labels).float().mean()))
            change = ", ".join(f"{c:+.1f}" for c in changes) or "-"
            print(f"| {classes} | {per_class} | {len(changes)} | {args.noise_draws} | {change} |", flush=True)

if __name__ == "__main__":
    with torch.no_grad():
        main()
