"""One task's cells, penalty by penalty: why the head's choice went where it did.

For each seed it prints the sentence scores' cross-validated accuracy and log-loss on the
labelled images and their test accuracy, then every penalty's (the folds of
``fit_feature_head``): held-out accuracy, log-loss, images gained and lost against the
sentence scores, and the test accuracy of the head refitted on every labelled image. With
``--probe`` also the same for a head without the sentence scores (a plain penalised probe).
A design tool for the built-in and design tasks.

    OMP_NUM_THREADS=1 python experiments/head_cell.py --suite experiments/design/design-suite.json \\
        --task bladder-wash --shots 16 --seeds 0 --probe
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from biomedvr_cli.method import feature_head as fh
from biomedvr_cli.method.config import MethodConfig
from head_gate_study import candidates


def main() -> None:
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.benchmark.datasets import load_dataset
    from biomedvr_cli.benchmark.protocol import load_suite
    from biomedvr_cli.data import sample_few_shot
    from biomedvr_cli.method.zero_shot import zero_shot_logits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, required=True)
    parser.add_argument("--task", required=True, help="the dataset's name in the suite")
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--seeds", default="0", help="comma-separated")
    parser.add_argument("--probe", action="store_true", help="also a head without the sentence scores")
    args = parser.parse_args()
    backbone, config = load_backbone("sandbox", device="cpu"), MethodConfig()
    spec = next(s for s in load_suite(args.suite).datasets if s.name == args.task)
    data = load_dataset(spec)
    sets = data.attributes.sets
    tx, ty = data.features(backbone, data.test)
    z_test = zero_shot_logits(backbone, tx, data.classes, sets).float()
    for seed in (int(s) for s in args.seeds.split(",")):
        split = sample_few_shot(data.pool, data.classes, args.shots, seed=seed, val_shots=None)
        xs, ys = data.features(backbone, split.train + split.val)
        z = zero_shot_logits(backbone, xs, data.classes, sets).float()
        kinds = [("head", 1.0)] + ([("probe without sentence scores", 0.0)] if args.probe else [])
        for kind, keep in kinds:
            (start, heads), _ = candidates(z * keep, xs.float(), ys.long(), len(data.classes), seed=seed,
                                           config=config, test_offsets=z_test * keep, test_features=tx.float(),
                                           test_labels=ty)
            if keep:
                reference = start
                print(f"seed {seed}, {ys.numel()} labelled images: sentence scores cv accuracy "
                      f"{start.correct.float().mean():.3f}, log-loss {start.nll.mean():.3f}, test {start.test_accuracy:.3f}")
            for c in heads:
                gained, lost = fh._flips(c.correct, reference.correct)
                print(f"  {kind} penalty {c.penalty:.3g}: cv accuracy {c.correct.float().mean():.3f}, log-loss "
                      f"{c.nll.mean():.3f}, gained {gained} lost {lost}, test {c.test_accuracy:.3f}")


if __name__ == "__main__":
    with torch.no_grad():
        main()
