"""Study of prediction-set calibration and outlier scores on frozen features (no VR training).

For each dataset of a suite and seed, draws the support and validation images as the
benchmark does, fits the feature head on all of them (as the default ``fit`` does when its VR
stage keeps the untrained start, nearly every fit on sandbox v2) and compares, on the test
images:

- prediction sets at ``--level`` from calibrations made in different ways (``--calibrations``):
  ``refit`` (each fold's head refitted with the penalty the whole fit chose: what `fit` does)
  ``nested`` (each fold's model made by the whole head procedure, penalty choice and test
  included, on the other folds' images) and ``hybrid`` (split conformal on the sentence scores
  when the whole fit kept them, else ``nested``);
- outlier scores (``--scores``) by their AUROC against real images of other kinds (BreastMNIST
  ultrasound, RetinaMNIST fundus photographs and BCCD blood-smear photographs from
  ../shared/real, each skipped when absent) and against the test cells of another task of the
  suite.

Used to design the calibration on the built-in tasks (experiments/tuning-suite.json); never run
it to tune on a held-out suite.

    OMP_NUM_THREADS=1 python experiments/calibration_study.py --suite experiments/tuning-suite.json --seeds 10
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import torch

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"


def real_outliers(size: int, count: int) -> dict[str, torch.Tensor]:
    """uint8 images [N, 3, size, size] of each real set found under ../shared/real."""
    from PIL import Image

    from biomedvr_cli.data import resize_and_crop

    def to_tensor(images: list[Image.Image]) -> torch.Tensor:
        arrays = [np.array(resize_and_crop(im.convert("RGB"), size), dtype=np.uint8) for im in images]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    out = {}
    for name in ("breastmnist", "retinamnist"):
        path = REAL / f"{name}.npz"
        if path.is_file():
            arrays = np.load(path, allow_pickle=False)["test_images"][:count]
            out[name] = to_tensor([Image.fromarray(a) for a in arrays])
    photos = sorted((REAL / "bccd" / "JPEGImages").glob("*.jpg"))[:count]
    if photos:
        out["bccd"] = to_tensor([Image.open(p) for p in photos])
    return out


def calibration_sets(name: str, z_lab, x_lab, y_lab, z_test, x_test, num_classes: int, fit, seed: int, config,
                     level: float) -> torch.Tensor:
    """Set membership [N, C] of the test images under one way of calibrating."""
    from biomedvr_cli.method import conformal
    from biomedvr_cli.method.feature_head import fit_feature_head, solve, stratified_folds

    folds = fit.folds
    if folds < 2:
        probs = torch.softmax(z_test, 1)
        scores = conformal.lac_scores(torch.softmax(z_lab, 1), y_lab)
        return conformal.prediction_sets(probs[:, None], scores, torch.zeros_like(y_lab), level, probs.argmax(1))
    fold_of = stratified_folds(y_lab, folds, seed)
    if name in ("refit", "hybrid") and math.isinf(fit.penalty):
        probs = torch.softmax(z_test, 1)
        scores = conformal.lac_scores(torch.softmax(z_lab, 1), y_lab)
        return conformal.prediction_sets(probs[:, None], scores, torch.zeros_like(y_lab), level, probs.argmax(1))
    scores = torch.zeros(y_lab.numel())
    test_probs = []
    for k in range(folds):
        held = fold_of == k
        if name == "refit":
            weight, bias, scale = solve(z_lab[~held], x_lab[~held], y_lab[~held], num_classes, fit.penalty,
                                        steps=config.head_lbfgs_steps)
        elif name in ("nested", "hybrid"):
            inner = fit_feature_head(z_lab[~held], x_lab[~held], y_lab[~held], num_classes, seed=seed, config=config)
            weight, bias, scale = inner.weight, inner.bias, inner.scale
        else:
            raise SystemExit(f"unknown calibration {name!r}")
        probs = torch.softmax(scale * z_lab[held] + x_lab[held] @ weight.t() + bias, 1)
        scores[held] = conformal.lac_scores(probs, y_lab[held])
        test_probs.append(torch.softmax(scale * z_test + x_test @ weight.t() + bias, 1))
    final = fit.scale * z_test + x_test @ fit.weight.t() + fit.bias
    return conformal.prediction_sets(torch.stack(test_probs, 1), scores, fold_of, level, final.argmax(1))


def outlier_score(name: str, x_lab: torch.Tensor, y_lab: torch.Tensor, num_classes: int, x_new: torch.Tensor):
    """Outlier scores [N] of new features against the labelled ones (higher: less like them)."""
    import torch.nn.functional as F

    from biomedvr_cli.method import outliers

    if name == "means":  # the earlier score, still used by adapters that stored it
        sums = torch.zeros(num_classes, x_lab.shape[1]).index_add_(0, y_lab, x_lab)
        return outliers.cosine_scores(x_new, F.normalize(sums, dim=1))
    if name.startswith("knn"):
        k = int(name[3:] or 1)
        cosine = x_new @ x_lab.t()
        return 1.0 - cosine.topk(min(k, x_lab.shape[0]), dim=1).values.mean(1)
    if name == "mahalanobis":  # shared covariance shrunk by Ledoit-Wolf (the score `fit` stores)
        means, precision = outliers.fit_gaussian(x_lab, y_lab, num_classes)
        return outliers.mahalanobis_scores(x_new, means, precision)
    raise SystemExit(f"unknown outlier score {name!r}")


def main() -> None:
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.benchmark.datasets import load_dataset
    from biomedvr_cli.benchmark.protocol import load_suite
    from biomedvr_cli.data import sample_few_shot
    from biomedvr_cli.method import conformal, outliers
    from biomedvr_cli.method.config import MethodConfig
    from biomedvr_cli.method.feature_head import fit_feature_head
    from biomedvr_cli.method.zero_shot import image_features, zero_shot_logits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("experiments/tuning-suite.json"))
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--calibrations", default="refit,nested,hybrid")
    parser.add_argument("--scores", default="means,knn1,knn3,mahalanobis")
    parser.add_argument("--real-images", type=int, default=100)
    parser.add_argument("--jsonl", type=Path, default=None, help="append every row here")
    args = parser.parse_args()
    config = MethodConfig()
    suite = load_suite(args.suite)
    backbone = load_backbone("sandbox", device="cpu")
    real = {k: image_features(backbone, v) for k, v in real_outliers(backbone.image_size, args.real_images).items()}
    datasets = [load_dataset(spec) for spec in suite.datasets]
    calibrations, scores = args.calibrations.split(","), args.scores.split(",")
    print(f"| dataset | seeds | {' | '.join(f'{c} coverage / size÷C' for c in calibrations)} | "
          + " | ".join(f"{s} AUROC ({', '.join([*real, 'other task'])})" for s in scores) + " |")
    print("|---" * (2 + len(calibrations) + len(scores)) + "|")
    for i, data in enumerate(datasets):
        other = datasets[(i + 1) % len(datasets)]
        if other.spec.sandbox_task == data.spec.sandbox_task:  # the same cells under another shift: not "another kind"
            other = next((d for d in datasets if d.spec.sandbox_task != data.spec.sandbox_task), other)
        x_other, _ = other.features(backbone, other.test)
        sets = {c: [] for c in calibrations}
        aurocs = {s: {k: [] for k in [*real, "other"]} for s in scores}
        n_cls = len(data.classes)
        for seed in range(args.seeds):
            split = sample_few_shot(data.pool, data.classes, args.shots, seed=seed, val_shots=None)
            x_lab, y_lab = data.features(backbone, split.train + split.val)
            x_test, y_test = data.features(backbone, data.test)
            z_lab = zero_shot_logits(backbone, x_lab, data.classes, data.attributes.sets)
            z_test = zero_shot_logits(backbone, x_test, data.classes, data.attributes.sets)
            fit = fit_feature_head(z_lab, x_lab, y_lab, n_cls, seed=seed, config=config)
            row = {"dataset": spec_name(data), "seed": seed, "shots": args.shots, "penalty": fit.penalty}
            for c in calibrations:
                members = calibration_sets(c, z_lab, x_lab, y_lab, z_test, x_test, n_cls, fit, seed, config, args.level)
                m = conformal.set_metrics(members, y_test.tolist(), data.classes)
                sets[c].append((m["coverage"], m["mean_set_size"] / n_cls))
                row[c] = {"coverage": m["coverage"], "size_ratio": m["mean_set_size"] / n_cls}
            for s in scores:
                inl = outlier_score(s, x_lab, y_lab, n_cls, x_test)
                for k, feats in [*real.items(), ("other", x_other)]:
                    aurocs[s][k].append(outliers.auroc(inl, outlier_score(s, x_lab, y_lab, n_cls, feats)))
                row[s] = {k: v[-1] for k, v in aurocs[s].items()}
            if args.jsonl is not None:
                with args.jsonl.open("a") as f:
                    f.write(json.dumps(row) + "\n")
        cells = [f"{statistics.fmean(a for a, _ in v):.3f} / {statistics.fmean(b for _, b in v):.2f}"
                 for v in sets.values()]
        cells += [", ".join(f"{statistics.fmean(v):.3f}" for v in per.values()) for per in aurocs.values()]
        print(f"| {spec_name(data)} | {args.seeds} | " + " | ".join(cells) + " |", flush=True)


def spec_name(data) -> str:
    return data.spec.name


if __name__ == "__main__":
    with torch.no_grad():
        main()
