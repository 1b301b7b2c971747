"""Two redesigns of the feature head tried on frozen features, against the head as it is.

For each dataset of a suite, K and seed (support and validation drawn as the benchmark does),
test accuracy of attribute zero-shot, the benchmark's linear probe, the default feature head,
and two variants, each chosen by the same cross-validation, paired test and log-loss rule:

- ``forms``: the penalties are tried in two forms, residual to the sentence scores (today) and a
  plain probe (no sentence scores), and the cross-validation picks the form as well.
- ``probe form``: the plain probe form only (the sentence scores stay as the start to beat).
- ``flips``: the head is fitted on each labelled image and its three flips (horizontal,
  vertical, both), with the folds grouped by source image and held-out scores on the source
  images only.

Design tool for the built-in tasks (experiments/tuning-suite.json); never run it on a held-out
suite to tune.

    OMP_NUM_THREADS=1 python experiments/head_variants_study.py --suite experiments/tuning-suite.json --shots 4,16 --seeds 6
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from biomedvr_cli.method import feature_head as fh

FLIPS = (lambda x: x.flip(3), lambda x: x.flip(2), lambda x: x.flip(2).flip(3))


def _held_out(offsets, features, labels, num_classes, penalty, fold_of, folds, steps, scored):
    """Held-out correctness and NLL of the ``scored`` images; fold models fitted on every other-fold row."""
    correct = torch.zeros(int(scored.sum()), dtype=torch.bool)
    nll = torch.zeros(int(scored.sum()))
    s_off, s_feat, s_lab, s_fold = offsets[scored], features[scored], labels[scored], fold_of[scored]
    for k in range(folds):
        held, mine = fold_of == k, s_fold == k
        weight, bias, scale = fh.solve(offsets[~held], features[~held], labels[~held], num_classes, penalty,
                                       steps=steps)
        logits = scale * s_off[mine] + s_feat[mine] @ weight.t() + bias
        correct[mine] = logits.argmax(1) == s_lab[mine]
        nll[mine] = F.cross_entropy(logits, s_lab[mine], reduction="none")
    return correct, nll


def fit_variant(offsets, features, labels, num_classes, *, seed, config, forms=("residual",), views=1):
    """The default head's selection over (form, penalty) candidates; rows are ``views`` stacked copies of the images.

    Returns (form, penalty, weight, bias, scale). The start, the paired test and the log-loss
    choice are those of :func:`fit_feature_head` (``head_test`` "either").
    """
    n = labels.numel() // views
    base = labels[:n]
    per_class = torch.bincount(base, minlength=num_classes)
    folds, steps, z = min(config.head_folds, int(per_class.max())), config.head_lbfgs_steps, config.clear_z
    if folds < 2 or n < 2 * num_classes:
        return ("residual", math.inf, *fh.solve(offsets, features, labels, num_classes, math.inf, steps=steps))
    fold_of = fh.stratified_folds(base, folds, seed).repeat(views)
    scored = torch.zeros_like(labels, dtype=torch.bool)
    scored[:n] = True
    start_correct, start_nll = _held_out(offsets, features, labels, num_classes, math.inf, fold_of, folds, steps, scored)
    best = (fh._selection_key(start_correct, start_nll, "log-loss"), ("residual", math.inf))
    likelihood_arm = int(per_class.min()) >= config.head_likelihood_min
    for form in forms:
        form_offsets = offsets if form == "residual" else torch.zeros_like(offsets)
        for penalty in config.head_penalties:
            correct, nll = _held_out(form_offsets, features, labels, num_classes, penalty, fold_of, folds, steps, scored)
            passed = fh.clearly_better(correct, start_correct, z)
            if not passed and likelihood_arm:
                gained, lost = fh._flips(correct, start_correct)
                _, recalibrated = _held_out(offsets, features[:, :0], labels, num_classes, penalty, fold_of, folds,
                                            steps, scored)
                passed = gained >= lost and fh.clearly_more_likely(nll, recalibrated, z)
            key = fh._selection_key(correct, nll, "log-loss")
            if passed and key > best[0]:
                best = (key, (form, penalty))
    form, penalty = best[1]
    form_offsets = offsets if form == "residual" else torch.zeros_like(offsets)
    return (form, penalty, *fh.solve(form_offsets, features, labels, num_classes, penalty, steps=steps))


def main() -> None:
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.benchmark.datasets import load_dataset
    from biomedvr_cli.benchmark.methods import JobInputs, Overrides, run_method
    from biomedvr_cli.benchmark.protocol import load_suite
    from biomedvr_cli.data import sample_few_shot
    from biomedvr_cli.method.config import MethodConfig
    from biomedvr_cli.method.zero_shot import image_features, zero_shot_logits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("experiments/tuning-suite.json"))
    parser.add_argument("--shots", default="4,16")
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args()
    config = MethodConfig()
    backbone = load_backbone("sandbox", device="cpu")
    columns = ("zs-attributes", "linear-probe", "head (default)", "forms", "probe form", "flips")
    print("| dataset | K | " + " | ".join(columns) + " | forms chosen |")
    print("|---" * (len(columns) + 3) + "|")
    for spec in load_suite(args.suite).datasets:
        data = load_dataset(spec)
        sets = data.attributes.sets
        test_x, test_y = data.features(backbone, data.test)
        test_z = zero_shot_logits(backbone, test_x, data.classes, sets)

        def accuracy(logits: torch.Tensor) -> float:
            return float((logits.argmax(1) == test_y).float().mean())

        for shots in (int(s) for s in args.shots.split(",")):
            rows: dict[str, list[float]] = {c: [] for c in columns}
            chosen = []
            for seed in range(args.seeds):
                split = sample_few_shot(data.pool, data.classes, shots, seed=seed, val_shots=None)
                images, labels = data.pixels(split.train + split.val, backbone.image_size)
                views = torch.cat([image_features(backbone, images)] + [image_features(backbone, t(images)) for t in FLIPS])
                offsets = zero_shot_logits(backbone, views, data.classes, sets)
                n, k = labels.numel(), len(data.classes)
                rows["zs-attributes"].append(accuracy(test_z))
                probe = run_method("linear-probe", JobInputs(data, backbone, split.train, split.val, shots, seed, Overrides()))
                rows["linear-probe"].append(float((probe.logits.argmax(1) == probe.labels).float().mean()))
                head = fh.fit_feature_head(offsets[:n], views[:n], labels, k, seed=seed, config=config)
                rows["head (default)"].append(accuracy(head.scale * test_z + test_x @ head.weight.t() + head.bias))
                for column, forms in (("forms", ("residual", "probe")), ("probe form", ("probe",))):
                    form, penalty, weight, bias, scale = fit_variant(offsets[:n], views[:n], labels, k, seed=seed,
                                                                     config=config, forms=forms)
                    start = test_z if form == "residual" else torch.zeros_like(test_z)
                    rows[column].append(accuracy(scale * start + test_x @ weight.t() + bias))
                    if column == "forms":
                        chosen.append("zs" if math.isinf(penalty) else f"{form[0]}{penalty:g}")
                _, _, weight, bias, scale = fit_variant(offsets, views, labels.repeat(len(FLIPS) + 1), k, seed=seed,
                                                        config=config, views=len(FLIPS) + 1)
                rows["flips"].append(accuracy(scale * test_z + test_x @ weight.t() + bias))
            cells = " | ".join(f"{100 * statistics.mean(v):.1f}" for v in rows.values())
            print(f"| {spec.name} | {shots} | {cells} | {', '.join(chosen)} |", flush=True)


if __name__ == "__main__":
    with torch.no_grad():
        main()
