"""The methods a benchmark compares, all on the same frozen backbone, shots and seeds.

What each method is comes from the method registry (``method/registry.json``, the same one
``fit --method`` reads); here is only the fitting code of each family, a small function
``(MethodSpec, JobInputs) -> MethodOutput``. They reuse the library:
zero-shot scoring (``zero_shot``), the BioMedVR head and its training loop
(``build.build_head``, ``training.train_head`` / ``predict_logits``), the recipes, and
scikit-learn for the linear probe. Selection always uses the validation split.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from biomedvr_cli.errors import UsageError
from biomedvr_cli.method.config import GAUSSIAN_FIELDS, HEAD_ONLY_FIELDS
from biomedvr_cli.method.registry import MethodSpec, registry

LINEAR_PROBE_C = tuple(float(c) for c in np.logspace(-2, 3, 11))
# Methods on this recipe are run as published: no selection, every labelled image, last epoch.
PUBLISHED_RECIPE = "paper"


# The methods and groups are data: method/registry.json (one registry for `fit --method` and here).
METHODS: dict[str, MethodSpec] = registry().methods
GROUPS: dict[str, tuple[str, ...]] = registry().groups


def resolve_methods(names: list[str] | str) -> list[str]:
    """Expand names and groups (``all``, ``baselines``, ``ours``, ``ablations``) in order, each once."""
    items = names.split(",") if isinstance(names, str) else [p for n in names for p in n.split(",")]
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item in METHODS:
            out.append(item)
        elif item in GROUPS:
            out.extend(GROUPS[item])
        else:
            raise UsageError(f"unknown method {item!r}",
                             f"choose from {', '.join(METHODS)} or a group: {', '.join(GROUPS)} (`--list-methods`)")
    if not out:
        raise UsageError("no methods given", "pass --methods all, or a comma-separated list")
    return list(dict.fromkeys(out))


@dataclass
class Overrides:
    """Training overrides: absolute epochs for every trained method, or a scale on the VR recipes' epochs."""

    epochs: int | None = None
    epoch_scale: float | None = None
    batch_size: int | None = None

    def recipe(self, name: str):
        from biomedvr_cli.method.recipes import load_recipe

        recipe = load_recipe(name)
        epochs = self.epochs
        if epochs is None and self.epoch_scale is not None:
            epochs = max(1, round(recipe.epochs * self.epoch_scale))
        return recipe.with_overrides(epochs=epochs, batch_size=self.batch_size,
                                     batch_size_one_shot=min(self.batch_size, recipe.batch_size_one_shot)
                                     if self.batch_size else None)

    def coop(self):
        """CoOp keeps its published schedule under ``epoch_scale`` (it is cheap); ``epochs`` still overrides it."""
        from biomedvr_cli.benchmark.coop import CoOpRecipe

        return CoOpRecipe(epochs=self.epochs)


def method_signature(spec: MethodSpec, overrides: Overrides) -> dict[str, Any]:
    """Everything about a method that changes its results (stored with each job, checked on resume)."""
    sig: dict[str, Any] = {"name": spec.name, "family": spec.family, "text": spec.scorer}
    if spec.family == "vr":
        assert spec.config is not None and spec.recipe is not None
        sig["config"] = spec.config.to_dict()
        if not spec.config.feature_head:
            # how a head would be chosen does not matter without one (and keeps stored jobs valid)
            for name in HEAD_ONLY_FIELDS:
                sig["config"].pop(name)
        elif spec.config.head_combine == "average" or spec.config.head_family == "logistic":
            # logistic heads only, as before the Gaussian family existed: jobs stored then stay valid
            for name in ("head_family", *GAUSSIAN_FIELDS):
                sig["config"].pop(name)
        sig["recipe"] = {k: v for k, v in overrides.recipe(spec.recipe).to_dict().items() if k != "description"}
    elif spec.family == "coop":
        sig["recipe"] = overrides.coop().to_dict()
    elif spec.family == "linear-probe":
        sig["C_grid"] = list(LINEAR_PROBE_C)
    else:
        assert spec.config is not None
        sig["k"], sig["m"] = spec.config.k, spec.config.m
    return sig


# Relative costs for balancing jobs over ranks, in image-tower forward passes. Rough on purpose
# (measured once on the sandbox: a backward pass costs about two forwards; a CoOp step through
# the text tower costs about half an image forward per class prompt). Only relative sizes
# matter; the `paper` recipe's jobs come out about 3x too cheap (see the README).
_BACKWARD_FACTOR = 3.0
_COOP_PROMPT_FACTOR = 0.5


def estimated_cost(spec: MethodSpec, overrides: Overrides, *, shots: int, classes: int, val_per_class: int,
                   test_images: int) -> float:
    """A job's expected compute relative to other jobs of the same run (for sharding, not reporting)."""
    train = shots * classes
    val = val_per_class * classes
    if spec.family == "zero-shot":
        return float(test_images)
    if spec.family == "linear-probe":
        return float(train + val + test_images)
    if spec.family == "coop":
        recipe = overrides.coop()
        steps = recipe.epochs_for(shots) * max(1, -(-train // recipe.batch_size))
        return steps * classes * _BACKWARD_FACTOR * _COOP_PROMPT_FACTOR + train + val + test_images
    assert spec.config is not None and spec.recipe is not None
    recipe = overrides.recipe(spec.recipe)
    views = 2 if spec.config.negative else 1
    evaluations = recipe.epochs // max(1, recipe.eval_every) + 2
    return views * (recipe.epochs * train * _BACKWARD_FACTOR + evaluations * val + test_images)


@dataclass
class JobInputs:
    """A job's data: the drawn support and validation records, the dataset (with its caches), the backbone."""

    dataset: Any  # LoadedDataset
    backbone: Any  # Backbone
    train: list
    val: list
    shots: int
    seed: int
    overrides: Overrides
    text_cache: dict = field(default_factory=dict)

    def pixels(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        records = {"train": self.train, "val": self.val, "test": self.dataset.test}[which]
        return self.dataset.pixels(records, self.backbone.image_size)

    def features(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        records = {"train": self.train, "val": self.val, "test": self.dataset.test}[which]
        return self.dataset.features(self.backbone, records)

    def sets(self, spec: MethodSpec):
        return self.dataset.attributes.sets if spec.scorer == "attributes" else self.dataset.class_name_sets()


@dataclass
class MethodOutput:
    """Test logits (or log-probabilities), labels, and how the model was chosen."""

    logits: torch.Tensor
    labels: torch.Tensor
    fit_seconds: float
    selection: str
    selected_epoch: int | None = None
    val_accuracy: float | None = None
    fitted_images: int = 0  # labelled images the final model was fitted (or selected) on: support + validation
    vr: dict[str, Any] | None = None  # VR methods: what the VR stage did (VRReport.to_dict)
    # As-published VR methods: test accuracy of the untrained start (the padding view at zero), so a
    # report can say whether training moved the method above where it began (sandbox property b).
    start_accuracy: float | None = None


def _all_labelled(job: JobInputs, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Support and validation together (features or pixels): what every trained method ends fitted on."""
    get = job.features if kind == "features" else job.pixels
    x, y = get("train")
    vx, vy = get("val")
    return torch.cat([x, vx]), torch.cat([y, vy])


class _CachedTexts:
    """The backbone, with ``encode_texts`` memoised (text banks are encoded once per process)."""

    def __init__(self, backbone, cache: dict) -> None:
        self._backbone, self._cache = backbone, cache

    def __getattr__(self, name: str):
        return getattr(self._backbone, name)

    def encode_texts(self, texts):
        key = tuple(texts)
        if key not in self._cache:
            self._cache[key] = self._backbone.encode_texts(list(texts))
        return self._cache[key]


def run_zero_shot(spec: MethodSpec, job: JobInputs) -> MethodOutput:
    from biomedvr_cli.method.zero_shot import zero_shot_logits

    feats, labels = job.features("test")
    start = time.perf_counter()
    backbone = _CachedTexts(job.backbone, job.text_cache)
    assert spec.config is not None
    logits = zero_shot_logits(backbone, feats, job.dataset.classes, job.sets(spec), k=spec.config.k, m=spec.config.m)
    return MethodOutput(logits, labels, time.perf_counter() - start, "none (zero-shot)")


def run_linear_probe(spec: MethodSpec, job: JobInputs) -> MethodOutput:
    """C chosen on validation (fitted on the support set), then the probe refitted on support + validation."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    x, y = (t.numpy() for t in job.features("train"))
    vx, vy = (t.numpy() for t in job.features("val"))
    ax, ay = (t.numpy() for t in _all_labelled(job, "features"))
    tx, ty = job.features("test")
    n_classes = len(job.dataset.classes)
    start = time.perf_counter()

    def fit(c: float, inputs: np.ndarray, targets: np.ndarray) -> LogisticRegression:
        with warnings.catch_warnings():  # a few shots can leave lbfgs short of its tolerance at large C
            warnings.simplefilter("ignore", ConvergenceWarning)
            return LogisticRegression(C=c, max_iter=2000).fit(inputs, targets)

    if len(vy):
        best = None
        for c in LINEAR_PROBE_C:
            probs = fit(c, x, y).predict_proba(vx)
            key = (float((probs.argmax(1) == vy).mean()), -float(log_loss(vy, probs, labels=list(range(n_classes)))))
            if best is None or key > best[0]:
                best = (key, c)
        assert best is not None
        (val_acc, _), chosen = best
        selection = (f"C={chosen:g} chosen on validation accuracy (ties: lower NLL) from {len(LINEAR_PROBE_C)} values, "
                     "then refitted on support + validation")
    else:
        chosen, val_acc = 1.0, None
        selection = "C=1 (no validation split)"
    model = fit(chosen, ax, ay)
    seconds = time.perf_counter() - start
    probs = model.predict_proba(tx.numpy())
    return MethodOutput(torch.from_numpy(np.log(np.clip(probs, 1e-12, 1.0))).float(), ty, seconds, selection,
                        val_accuracy=val_acc, fitted_images=len(ay))


def run_coop(spec: MethodSpec, job: JobInputs) -> MethodOutput:
    """As published (BiomedCoOp's protocol): the full schedule on support + validation, last epoch."""
    from biomedvr_cli.benchmark.coop import train_coop

    x, y = _all_labelled(job, "features")
    tx, ty = job.features("test")
    empty = x[:0]
    result = train_coop(job.backbone, job.dataset.classes, x, y, empty, y[:0], tx, job.overrides.coop(),
                        seed=job.seed, shots=job.shots)
    rule = "full schedule on support + validation, last epoch (as published)"
    return MethodOutput(result.logits, ty, result.seconds, rule, result.selected_epoch, None, fitted_images=len(y))


def run_vr(spec: MethodSpec, job: JobInputs) -> MethodOutput:
    """VR methods. As-published recipes (no selection in the reference) train on support + validation for the
    full schedule and keep the last epoch; biomedvr's own recipes select on validation and refit on all."""
    from biomedvr_cli.method.build import build_head
    from biomedvr_cli.method.training import predict_logits, train_head

    assert spec.config is not None and spec.recipe is not None
    recipe = job.overrides.recipe(spec.recipe)
    train_x, train_y = job.pixels("train")
    val_x, val_y = job.pixels("val")
    test_x, test_y = job.pixels("test")
    if spec.recipe == PUBLISHED_RECIPE:
        train_x, train_y = _all_labelled(job, "pixels")
        val_x, val_y = val_x[:0], val_y[:0]
    start = time.perf_counter()
    head, _ = build_head(_CachedTexts(job.backbone, job.text_cache), job.dataset.classes, job.sets(spec), spec.config,
                         seed=job.seed)
    start_accuracy, start_pass = None, 0.0
    if spec.recipe == PUBLISHED_RECIPE:  # one extra test pass, small beside the 400-epoch schedule
        tick = time.perf_counter()
        start_logits = predict_logits(head, job.backbone.encode_images, test_x, device=job.backbone.device)
        start_accuracy = float((start_logits.argmax(dim=1) == test_y).float().mean())
        start_pass = time.perf_counter() - tick  # evaluation, not fitting: left out of fit_seconds
    result = train_head(head, job.backbone.encode_images, train_x, train_y, val_x, val_y, recipe,
                        seed=job.seed, device=job.backbone.device, shots=job.shots)
    seconds = time.perf_counter() - start - start_pass
    logits = predict_logits(head, job.backbone.encode_images, test_x, device=job.backbone.device)
    rule = result.selection_rule + (f"; {result.feature_head.describe()}" if result.feature_head else "")
    if spec.recipe == PUBLISHED_RECIPE:
        rule = "full schedule on support + validation, last epoch (as published)"
    return MethodOutput(logits, test_y, seconds, rule, result.selected_epoch, result.val_accuracy,
                        fitted_images=len(train_y) + len(val_y), vr=result.vr.to_dict() if result.vr else None,
                        start_accuracy=start_accuracy)


RUNNERS: dict[str, Callable[[MethodSpec, JobInputs], MethodOutput]] = {
    "zero-shot": run_zero_shot,
    "linear-probe": run_linear_probe,
    "coop": run_coop,
    "vr": run_vr,
}


def run_method(name: str, job: JobInputs) -> MethodOutput:
    """Run one method on one job's data."""
    spec = METHODS[name]
    return RUNNERS[spec.family](spec, job)
