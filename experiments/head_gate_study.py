"""How the default `fit` decides between the sentence scores and a feature head: rules compared.

Issue #17's K = 4 misses were of two kinds: the paired check keeps the sentence scores
(attribute zero-shot) where a probe is far better, and a head passes but with a penalty so
strong that it stays near the start. This study computes, once per dataset, K and seed, the
cross-validated correctness and log-loss of every penalty (the folds of `fit_feature_head`),
the test accuracy of the head refitted at each penalty, zero-shot and the benchmark's fair
probe; then it applies each decision rule to the same numbers. The rules ``current`` (today's
default over the penalties computed, ``--grid``) and ``average`` (``--head-combine average``)
must give what `fit_feature_head` gives (checked on every cell).

It also draws tasks whose image features carry no information (as `feature_head_study.py
--noise-draws`) and reports what each rule costs there: the price of letting heads through.

Design tool for the built-in tasks (experiments/tuning-suite.json) and the design tasks
(experiments/design/design-suite.json, --suite); never run it on a held-out suite to tune.
experiments/rules_per_task.py turns its printed log into per-task means (the goals' unit).

    OMP_NUM_THREADS=1 python experiments/head_gate_study.py --shots 4,16 --seeds 10 --out experiments/results/head-gate-builtin.json

The rules were renamed as the default moved: in ``head-gate-builtin*.json`` (commit 4a5c2de's
script) ``current`` is z = 1.5 over decades; in ``head-grid-builtin*.json`` (commit db342a1's)
``current`` is z = 0.5 over decades and ``half-decades`` the default that followed; in
``head-average-builtin*.json`` ``current`` is today's default (the half-decade selection),
``pseudo-BMA start 1/2`` the average tried on 2026-12-07 (now ``average``) and ``pseudo-BMA``
the uniform prior (now ``pseudo-BMA uniform``). ``tempered log-loss`` (each candidate's held-out
log-loss after one fitted temperature, for the choice; ``and check``: for the likelihood arm too)
was added on 2026-12-07 for ``head-tempered-*`` and not adopted. Run now, ``current`` and ``average`` are both
checked against ``fit_feature_head`` on every cell.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from biomedvr_cli.method import feature_head as fh
from biomedvr_cli.method.config import DECADE_PENALTIES, MethodConfig


@dataclass
class Candidate:
    """One penalty's held-out numbers and the test accuracy of its refitted head."""

    penalty: float
    correct: torch.Tensor
    nll: torch.Tensor
    recal_nll: torch.Tensor | None
    test_accuracy: float
    cv_logits: torch.Tensor | None = None  # held-out fold logits [N, C] (for the combining rules)
    test_logits: torch.Tensor | None = None  # the refitted head's test logits [T, C]
    cv_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None


@dataclass
class Cell:
    """Everything a rule needs for one dataset, K and seed."""

    start: Candidate
    heads: list[Candidate]
    per_class_min: int
    zs: float
    probe: float
    chosen_by_fit: float = math.nan
    extra: dict = field(default_factory=dict)


def _key(c: Candidate, select: str) -> tuple[float, float]:
    acc, neg = float(c.correct.float().mean()), -float(c.nll.mean())
    return (neg, acc) if select == "log-loss" else (acc, neg)


def _passes(c: Candidate, start: Candidate, z: float, likelihood: bool, arm: str = "either") -> bool:
    if arm == "none":
        return True
    if fh.clearly_better(c.correct, start.correct, z):
        return True
    if arm == "either" and likelihood and c.recal_nll is not None:
        gained, lost = fh._flips(c.correct, start.correct)
        return gained >= lost and fh.clearly_more_likely(c.nll, c.recal_nll, z)
    return False


DECADES = DECADE_PENALTIES  # the grid before 2026-12-07
HALF_DECADES = MethodConfig().head_penalties  # today's: half-decade steps over the same range


def rule(z: float = 0.5, select: str = "log-loss", arm: str = "either", likelihood_min: int = 8,
         grid: tuple[float, ...] | None = None):
    """A decision rule shaped like fit_feature_head's: test each penalty of ``grid`` (None: every
    penalty computed), then pick by ``select``."""

    def choose(cell: Cell) -> Candidate:
        best, best_key = cell.start, _key(cell.start, select)
        likelihood = cell.per_class_min >= likelihood_min
        for c in cell.heads:
            if grid is not None and c.penalty not in grid:
                continue
            if _passes(c, cell.start, z, likelihood, arm) and _key(c, select) > best_key:
                best, best_key = c, _key(c, select)
        return best

    return choose


def _stack_weights(logits: list[torch.Tensor], labels: torch.Tensor, steps: int = 200) -> torch.Tensor:
    """Simplex weights whose mix of held-out logits has the lowest log-loss (convex in the weights)."""
    stacked = torch.stack([l.double() for l in logits])  # [J, N, C]
    theta = torch.zeros(len(logits), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        w = torch.softmax(theta, 0)
        loss = F.cross_entropy(torch.einsum("j,jnc->nc", w, stacked), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return torch.softmax(theta.detach(), 0)


def _mixed(cell: Cell, members: list[Candidate], weights: torch.Tensor) -> Candidate:
    """The candidate whose logits are the weighted sum of the members' (CV and test)."""
    cv = sum(w * m.cv_logits for w, m in zip(weights.tolist(), members))
    test = sum(w * m.test_logits for w, m in zip(weights.tolist(), members))
    labels, test_labels = cell.start.cv_labels, cell.start.test_labels
    on_start = sum(float(w) for w, m in zip(weights, members) if math.isinf(m.penalty))
    return Candidate(math.inf if on_start > 0.999 else math.nan, cv.argmax(1) == labels,
                     F.cross_entropy(cv, labels, reduction="none"), None,
                     float((test.argmax(1) == test_labels).float().mean()), cv, test, labels, test_labels)


def stack(members_of):
    """A rule that mixes the logits of some candidates with weights fitted on held-out folds."""

    def choose(cell: Cell) -> Candidate:
        members = members_of(cell)
        return _mixed(cell, members, _stack_weights([m.cv_logits for m in members], cell.start.cv_labels))

    return choose


def pseudo_bma(start_prior: float | None = None):
    """Weights proportional to each candidate's held-out likelihood (exp of minus summed log-loss),
    times a prior: uniform, or ``start_prior`` on the sentence scores and the rest shared by the heads."""

    def choose(cell: Cell) -> Candidate:
        members = [cell.start, *cell.heads]
        total = torch.tensor([-float(m.nll.double().sum()) for m in members], dtype=torch.float64)
        if start_prior is not None:
            heads = len(members) - 1
            total += torch.tensor([math.log(start_prior)] + [math.log((1 - start_prior) / heads)] * heads,
                                  dtype=torch.float64)
        return _mixed(cell, members, torch.softmax(total, 0))

    return choose


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, steps: int = 50) -> float:
    """The factor ``s`` (e^-5 to e^5) that minimises the log-loss of ``s * logits`` (convex in ``s``)."""
    log_s = torch.zeros((), dtype=torch.float64, requires_grad=True)
    x = logits.double()
    optimizer = torch.optim.LBFGS([log_s], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x * log_s.clamp(-5.0, 5.0).exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_s.detach().clamp(-5.0, 5.0).exp())


def _tempered(c: Candidate) -> Candidate:
    """The candidate with its held-out log-loss taken after one temperature fitted to its held-out logits."""
    if c.cv_logits is None:
        return c
    nll = F.cross_entropy(c.cv_logits * fit_temperature(c.cv_logits, c.cv_labels), c.cv_labels, reduction="none")
    return replace(c, nll=nll)


def tempered_rule(arm_too: bool = False, z: float = 0.5):
    """Like ``rule()``, but each candidate's log-loss (for the choice, and with ``arm_too`` for
    the likelihood arm of the check) is taken after a temperature: an accurate head made
    overconfident by a weak penalty is not ranked below the sentence scores for that alone."""

    def choose(cell: Cell) -> Candidate:
        start = _tempered(cell.start)
        heads = [_tempered(h) if arm_too else h for h in cell.heads]
        tempered = [_tempered(h) for h in cell.heads]
        best, best_key = cell.start, _key(start, "log-loss")
        likelihood = cell.per_class_min >= 8
        for c, t, orig in zip(heads, tempered, cell.heads):
            if _passes(c, cell.start, z, likelihood) and _key(t, "log-loss") > best_key:
                best, best_key = orig, _key(t, "log-loss")
        return best

    return choose


def oracle(cell: Cell) -> Candidate:
    """Not a rule: the candidate with the best *test* accuracy (the ceiling of any choice)."""
    return max([cell.start, *cell.heads], key=lambda c: c.test_accuracy)


# ``current`` is today's default (one penalty: the check at head_clear_z 0.5, then log-loss, over
# half-decades); ``average`` the heads averaged by held-out likelihood with half the prior on the
# start (``--head-combine average``: tried 2026-12-07, not kept); ``decades`` the default before
# today's, ``decades z=1.5`` earlier still; the others are variants (``stack``: simplex weights
# fitted to the held-out logits; ``oracle``: not a rule).
RULES = {
    "current": rule(),
    "average": pseudo_bma(MethodConfig().head_start_prior),
    "decades": rule(grid=DECADES),
    "decades z=1.5": rule(z=1.5, grid=DECADES),
    "z=0": rule(z=0.0),
    "accuracy-select": rule(select="accuracy"),
    "no-test log-loss": rule(arm="none"),
    "stack all": stack(lambda cell: [cell.start, *cell.heads]),
    "stack zs+selected": stack(lambda cell: [cell.start] + ([] if math.isinf(rule()(cell).penalty) else [rule()(cell)])),
    "stack zs+weakest": stack(lambda cell: [cell.start, cell.heads[-1]]),
    "pseudo-BMA uniform": pseudo_bma(),
    "tempered log-loss": tempered_rule(),
    "tempered log-loss and check": tempered_rule(arm_too=True),
    "oracle (test)": oracle,
}


def candidates(offsets, features, labels, num_classes, *, seed, config, test_offsets, test_features, test_labels):
    """The start and every penalty's held-out numbers and refitted test accuracy, or None without CV."""
    steps = config.head_lbfgs_steps
    per_class = torch.bincount(labels, minlength=num_classes)
    folds = min(config.head_folds, int(per_class.max()))
    if folds < 2 or labels.numel() < 2 * num_classes:
        return None, int(per_class.min())
    fold_of = fh.stratified_folds(labels, folds, seed)

    def one(penalty: float, recal: bool) -> Candidate:
        cv_logits = fh.held_out_logits(offsets, features, labels, num_classes, penalty, fold_of, folds, steps)
        correct = cv_logits.argmax(1) == labels
        nll = F.cross_entropy(cv_logits, labels, reduction="none")
        recal_nll = None
        if recal:
            _, recal_nll = fh._cross_validate(offsets, features[:, :0], labels, num_classes, penalty, fold_of, folds,
                                              steps)
        w, b, a = fh.solve(offsets, features, labels, num_classes, penalty, steps=steps)
        logits = a * test_offsets + test_features @ w.t() + b
        return Candidate(penalty, correct, nll, recal_nll, float((logits.argmax(1) == test_labels).float().mean()),
                         cv_logits, logits, labels, test_labels)

    start = one(math.inf, False)
    heads = [one(p, True) for p in config.head_penalties]
    return (start, heads), int(per_class.min())


def builtin_cells(args, config) -> list[tuple[str, int, int, Cell]]:
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.benchmark.datasets import load_dataset
    from biomedvr_cli.benchmark.methods import JobInputs, Overrides, run_method
    from biomedvr_cli.benchmark.protocol import load_suite
    from biomedvr_cli.data import sample_few_shot
    from biomedvr_cli.method.zero_shot import zero_shot_logits

    suite = load_suite(args.suite)
    backbone = load_backbone("sandbox", device="cpu")
    out = []
    for spec in suite.datasets:
        data = load_dataset(spec)
        sets = data.attributes.sets
        tx, ty = data.features(backbone, data.test)
        z_test = zero_shot_logits(backbone, tx, data.classes, sets).float()
        zs = float((z_test.argmax(1) == ty).float().mean())
        for shots in (int(s) for s in args.shots.split(",")):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                split = sample_few_shot(data.pool, data.classes, shots, seed=seed, val_shots=None)
                xs, ys = data.features(backbone, split.train + split.val)
                z_train = zero_shot_logits(backbone, xs, data.classes, sets).float()
                probe = run_method("linear-probe", JobInputs(data, backbone, split.train, split.val, shots, seed,
                                                              Overrides()))
                probe_acc = float((probe.logits.argmax(1) == probe.labels).float().mean())
                made, per_class_min = candidates(z_train, xs.float(), ys.long(), len(data.classes), seed=seed,
                                                 config=config, test_offsets=z_test, test_features=tx.float(),
                                                 test_labels=ty)
                if made is None:
                    continue
                fit = fh.fit_feature_head(z_train, xs, ys, len(data.classes), seed=seed, config=config)
                cell = Cell(made[0], made[1], per_class_min, zs, probe_acc, fit.penalty)
                # fit_feature_head with head_combine average against the rule computed here, on the test images
                averaged = fh.fit_feature_head(z_train, xs, ys, len(data.classes), seed=seed,
                                               config=replace(config, head_combine="average"))
                logits = averaged.scale * z_test + tx.float() @ averaged.weight.t() + averaged.bias
                cell.extra["fit_test_accuracy"] = float((logits.argmax(1) == ty).float().mean())
                out.append((spec.name, shots, seed, cell))
                print(f"{spec.name} K={shots} s{seed}: zs {zs:.3f} probe {probe_acc:.3f} "
                      + " ".join(f"{n} {RULES[n](cell).test_accuracy:.3f}" for n in RULES), flush=True)
    return out


def noise_cells(args, config) -> list[tuple[str, int, int, Cell]]:
    """Tasks with uninformative features over a start right about half the time (no probe: it is chance)."""
    out = []
    for classes in (4, 6):
        for per_class in (int(n) for n in args.noise_per_class.split(",")):
            for draw in range(args.noise_draws):
                gen = torch.Generator().manual_seed(1000 * classes + 10 * per_class + draw)

                def task(count: int):
                    labels = torch.arange(count) % classes
                    feats = F.normalize(torch.randn(count, 64, generator=gen), dim=1)
                    right = torch.rand(count, 1, generator=gen) < 0.5
                    offs = torch.randn(count, classes, generator=gen) + 3.0 * F.one_hot(labels, classes) * right
                    return offs, feats, labels

                offs, feats, labels = task(classes * per_class)
                t_offs, t_feats, t_labels = task(2000)
                made, per_class_min = candidates(offs, feats, labels, classes, seed=draw, config=config,
                                                 test_offsets=t_offs, test_features=t_feats, test_labels=t_labels)
                zs = float((t_offs.argmax(1) == t_labels).float().mean())
                cell = Cell(made[0], made[1], per_class_min, zs, math.nan)
                out.append((f"noise C={classes}", per_class, draw, cell))
    return out


def summarize(cells, noise) -> dict:
    """Per rule: mean vs zs and probe over cells, misses, and the noise cost."""
    report = {}
    for name, choose in RULES.items():
        by_shots: dict[int, dict] = {}
        for _, shots, _, cell in cells:
            acc = choose(cell).test_accuracy
            row = by_shots.setdefault(shots, {"vs_probe": [], "vs_zs": []})
            row["vs_probe"].append(100 * (acc - cell.probe))
            row["vs_zs"].append(100 * (acc - cell.zs))
        stats = {}
        for shots, row in sorted(by_shots.items()):
            stats[str(shots)] = {
                "cells": len(row["vs_probe"]),
                "mean_vs_probe": statistics.mean(row["vs_probe"]),
                "mean_vs_zs": statistics.mean(row["vs_zs"]),
                "cells_more_than_2_below_probe": sum(v < -2 for v in row["vs_probe"]),
                "cells_more_than_1_below_zs": sum(v < -1 for v in row["vs_zs"]),
                "worst_vs_probe": min(row["vs_probe"]),
                "worst_vs_zs": min(row["vs_zs"]),
            }
        changes = [100 * (choose(c).test_accuracy - c.zs) for _, _, _, c in noise]
        stats["noise"] = {"draws": len(changes), "heads_chosen": sum(not math.isinf(choose(c).penalty)
                                                                    for _, _, _, c in noise),
                          "mean_change": statistics.mean(changes) if changes else None,
                          "worst_change": min(changes) if changes else None}
        report[name] = stats
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("experiments/tuning-suite.json"))
    parser.add_argument("--shots", default="4,16")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise-draws", type=int, default=30)
    parser.add_argument("--noise-per-class", default="8,20", help="images a class in the noise draws (8, 20: K = 4, 16)")
    parser.add_argument("--grid", choices=("decades", "half"), default="half",
                        help="penalties computed per cell: today's half-decade steps, or decades only (as before 2026-12-07)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    config = MethodConfig(head_penalties=DECADES if args.grid == "decades" else HALF_DECADES)
    cells = builtin_cells(args, config)
    mismatched = [(n, k, s) for n, k, s, c in cells if RULES["current"](c).penalty != c.chosen_by_fit]
    if mismatched:
        raise SystemExit(f"rule 'current' disagrees with fit_feature_head on {mismatched}")
    # fit_feature_head drops weights under AVERAGE_MIN_WEIGHT, the rule keeps them: allow one test image
    off = [(n, k, s) for n, k, s, c in cells
           if abs(RULES["average"](c).test_accuracy - c.extra["fit_test_accuracy"]) > 1.5 / c.start.test_labels.numel()]
    if off:
        raise SystemExit(f"rule 'average' disagrees with fit_feature_head (head_combine average) on {off}")
    noise = noise_cells(args, config) if args.noise_draws else []
    report = summarize(cells, noise)
    print(f"\n| rule | K | mean vs probe | mean vs zs | >2 below probe | >1 below zs | worst vs probe | noise heads | noise mean / worst |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, stats in report.items():
        nz = stats["noise"]
        for shots, s in stats.items():
            if shots == "noise":
                continue
            print(f"| {name} | {shots} | {s['mean_vs_probe']:+.1f} | {s['mean_vs_zs']:+.1f} | "
                  f"{s['cells_more_than_2_below_probe']}/{s['cells']} | {s['cells_more_than_1_below_zs']}/{s['cells']} | "
                  f"{s['worst_vs_probe']:+.1f} | {nz['heads_chosen']}/{nz['draws']} | "
                  + (f"{nz['mean_change']:+.1f} / {nz['worst_change']:+.1f} |" if nz["draws"] else "- |"))
    if args.out:
        args.out.write_text(json.dumps({"command": "python experiments/head_gate_study.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and v is not None),
            "report": report}, indent=1) + "\n")


if __name__ == "__main__":
    with torch.no_grad():
        main()
