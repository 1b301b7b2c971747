"""The feature head: a linear layer on the image feature, residual to the sentence scores.

What a linear probe has and attribute scoring lacks is a map fitted to the images
themselves. Here it is fitted *on top of* the sentence scores ``z0``:

    logits = a * z0 + f @ V.T + b,   minimise  mean CE  +  lam * (||V||^2 + ||b||^2 + (a - 1)^2)

with ``f`` the L2-normalised image feature, ``V = tau * W`` in logit units and ``a`` the
weight of the sentence scores (1 at the start; under a domain shift the data may trust the
sentences less). ``lam = inf`` is the sentence scorer itself; a small ``lam`` lets the head
move like a probe (a logistic-regression probe on these features needs penalties of about
1e-5: class differences in cosine features are small). Every
penalty of the grid (and ``inf``) is scored by stratified k-fold cross-validation over the
labelled images. With ``head_combine="select"`` (the default) one penalty is kept: a head
must beat the sentence scores clearly on the held-out folds, and among those that do the
lowest held-out log-loss wins. With ``"average"`` (an option: better on the built-in tasks,
worse at 16 shots on held-out set 9) the heads of every penalty are refitted on all images and
their logits averaged, each weighted by its held-out likelihood times a prior that gives the
sentence scores alone half the weight (pseudo-Bayesian model averaging): a sum of linear heads
is one linear head, so the adapter stores one head either way. Both are the pull toward the text start of
zero-shot-initialised probes (CLAP, LP++), with its strength set by the data instead of by a
formula in K.

With ``head_family="logistic+gaussian"`` (the default since 2026-12-08) the selection also
weighs shared-covariance Gaussian heads (:mod:`method.gaussian_head`), which follow the
directions in which the classes differ rather than those in which the features vary most.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from biomedvr_cli.method import gaussian_head as gaussian
from biomedvr_cli.method.config import MethodConfig
from biomedvr_cli.method.gaussian_head import GaussianHead

# A candidate head: a logistic head's penalty (inf = the sentence scores alone) or a Gaussian head.
Candidate = float | GaussianHead

# Every constant of the head (the penalties tried, the L-BFGS steps, how clear a gain must be,
# the images a class the log-loss check needs) is a MethodConfig field, recorded in the adapter.
# Averaged candidates below this weight are left out (their final fits spared; the rest rescaled).
AVERAGE_MIN_WEIGHT = 1e-3


@dataclass
class FeatureHeadFit:
    """The fitted head (in logit units) and how its penalty was chosen."""

    weight: torch.Tensor  # V [C, D]
    bias: torch.Tensor  # b [C]
    scale: float  # a, the weight of the sentence scores
    penalty: Candidate  # the candidate of largest weight (the only one when one is selected)
    folds: int
    cv_accuracy: float | None  # of the fitted head (selected or averaged), on held-out folds
    cv_nll: float | None
    start_cv_accuracy: float | None  # of the sentence scorer alone (penalty inf), same folds
    # (candidate, weight) of each head whose logits are summed; weights sum to 1, inf is the sentence scorer.
    mixture: tuple[tuple[Candidate, float], ...] = ()

    def __post_init__(self) -> None:
        if not self.mixture:
            self.mixture = ((self.penalty, 1.0),)

    @property
    def uses_features(self) -> bool:
        """Whether any part of the head reads the image feature (some weight on a finite penalty or a Gaussian head)."""
        return any(w > 0 and (isinstance(c, GaussianHead) or not math.isinf(c)) for c, w in self.mixture)

    def describe(self) -> str:
        """One line for the adapter and the report."""
        if self.cv_accuracy is None:
            return "feature head not fitted (too few labelled images for cross-validation)"
        versus = f"(accuracy {self.cv_accuracy:.3f} vs {self.start_cv_accuracy:.3f} for the sentence scores alone)"
        if len(self.mixture) > 1:
            parts = ", ".join(("sentence scores" if math.isinf(p) else f"{p:g}") + f" {w:.2f}"
                              for p, w in sorted(self.mixture, key=lambda m: -m[1]))
            return (f"feature heads averaged by their {self.folds}-fold cross-validated likelihood over the "
                    f"labelled images (penalty weight: {parts}) {versus}")
        if isinstance(self.penalty, GaussianHead):
            return (f"{self.penalty.describe()} chosen by {self.folds}-fold cross-validation over the labelled "
                    f"images {versus}")
        chosen = "none (sentence scores kept)" if math.isinf(self.penalty) else f"{self.penalty:g}"
        return f"feature-head penalty {chosen} chosen by {self.folds}-fold cross-validation over the labelled images {versus}"


def solve(offsets: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, num_classes: int,
          penalty: float, *, steps: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Penalised multinomial logistic regression on top of fixed offsets (convex; ``steps`` of L-BFGS): (V, b, a)."""
    weight = torch.zeros(num_classes, features.shape[1], dtype=torch.float64)
    bias = torch.zeros(num_classes, dtype=torch.float64)
    scale = torch.ones((), dtype=torch.float64)
    if math.isinf(penalty) or features.shape[0] == 0:
        return weight.float(), bias.float(), 1.0
    x, z0 = features.double(), offsets.double()
    params = [weight.requires_grad_(True), bias.requires_grad_(True), scale.requires_grad_(True)]
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(scale * z0 + x @ weight.t() + bias, labels)
        loss = loss + penalty * (weight.pow(2).sum() + bias.pow(2).sum() + (scale - 1).pow(2))
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach().float(), bias.detach().float(), float(scale.detach())


def solve_candidate(offsets: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    candidate: Candidate, *, steps: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(V, b, a) of one candidate fitted on these images: a logistic head's penalty, or a Gaussian head."""
    if isinstance(candidate, GaussianHead):
        return gaussian.solve_gaussian(features.float(), labels.long(), num_classes, candidate)
    return solve(offsets, features, labels, num_classes, candidate, steps=steps)


def solve_mixture(offsets: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  mixture: tuple[tuple[Candidate, float], ...], *, steps: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The weighted sum of the heads fitted for each candidate of ``mixture``: (V, b, a), one linear head."""
    weight = torch.zeros(num_classes, features.shape[1])
    bias, scale = torch.zeros(num_classes), 0.0
    for candidate, share in mixture:
        w, b, a = solve_candidate(offsets, features, labels, num_classes, candidate, steps=steps)
        weight, bias, scale = weight + share * w, bias + share * b, scale + share * a
    return weight, bias, scale


def stratified_folds(labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """Fold index of each image: each class's images dealt round-robin in a seeded order."""
    generator = torch.Generator().manual_seed(seed)
    fold_of = torch.empty_like(labels)
    offset = 0
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero(as_tuple=True)[0]
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        fold_of[idx] = (torch.arange(idx.numel()) + offset) % folds
        offset += idx.numel()  # spread small classes over different folds
    return fold_of


def held_out_logits(offsets, features, labels, num_classes, penalty, fold_of, folds, steps: int) -> torch.Tensor:
    """Logits [N, C] of each image from the head fitted at ``penalty`` without its fold."""
    logits = torch.zeros(labels.numel(), num_classes)
    for k in range(folds):
        held = fold_of == k
        if not bool(held.any()):
            continue
        weight, bias, scale = solve(offsets[~held], features[~held], labels[~held], num_classes, penalty, steps=steps)
        logits[held] = scale * offsets[held] + features[held] @ weight.t() + bias
    return logits


def _cross_validate(offsets, features, labels, num_classes, penalty, fold_of, folds,
                    steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image held-out correctness [N] (bool) and held-out NLL [N]."""
    logits = held_out_logits(offsets, features, labels, num_classes, penalty, fold_of, folds, steps)
    return logits.argmax(1) == labels, F.cross_entropy(logits, labels, reduction="none")


def clearly_better(correct: torch.Tensor, start_correct: torch.Tensor, z: float) -> bool:
    """A paired (McNemar-style) check that a head beats the start by ``z`` standard errors.

    ``gained`` images the head gets right and the start gets wrong, ``lost`` the reverse; the
    head must gain more than ``z * sqrt(gained + lost)`` net (``MethodConfig.head_clear_z`` for
    a feature head, ``clear_z`` for a trained VR epoch, where the values and how they were chosen
    are recorded). Picking the best of several penalties on a few held-out images would otherwise
    reward noise.
    """
    gained, lost = _flips(correct, start_correct)
    return gained - lost > z * math.sqrt(gained + lost)


def _flips(correct: torch.Tensor, start_correct: torch.Tensor) -> tuple[int, int]:
    """Images a change gets right that the start got wrong, and the reverse."""
    return int((correct & ~start_correct).sum()), int((~correct & start_correct).sum())


def clearly_more_likely(nll: torch.Tensor, reference_nll: torch.Tensor, z: float) -> bool:
    """A paired check on held-out log-loss: the mean per-image gain exceeds ``z`` standard errors.

    Log-loss uses how sure each prediction is, not only whether it is right, so it tells a
    real gain of a few points from noise on far fewer images than counting flips does.
    """
    gain = (reference_nll - nll).double()
    if gain.numel() < 2:
        return False
    spread = float(gain.std()) / math.sqrt(gain.numel())
    return float(gain.mean()) > z * spread


def fit_feature_head(offsets: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                     seed: int, config: MethodConfig) -> FeatureHeadFit:
    """Choose the penalty by cross-validation, then fit on every image. Inputs are on the CPU.

    With ``config.head_combine`` ``"average"`` every penalty is kept instead, weighted by its
    held-out likelihood (:func:`_average_heads`); what follows describes ``"select"``.

    The sentence scorer (``inf``) is kept unless some penalty of ``config.head_penalties``
    passes ``config.head_test`` (at ``config.head_clear_z`` standard errors) on held-out folds (at
    most ``config.head_folds``); among
    those, the lowest held-out log-loss wins, then the better accuracy (``config.head_select``
    ``"log-loss"``), or the best accuracy, then the lower log-loss (``"accuracy"``).
    ``accuracy``: the head gets clearly
    more images right (:func:`clearly_better`). ``either``: that, or the head's log-loss is
    clearly lower (:func:`clearly_more_likely`) than that of the sentence scores recalibrated
    with the same penalty (scale and bias only, so that fixing a badly scaled start does not
    count as the image feature helping) while it gets at least as many held-out images right
    as the start; the second arm needs ``config.head_likelihood_min`` images of every class.
    With ``config.head_family``
    ``"logistic+gaussian"`` the Gaussian heads of :mod:`method.gaussian_head` are candidates too,
    cross-validated on the same folds; they pass by the accuracy arm, or by the likelihood arm
    against the sentence scores as they are, and compete on the same key.
    """
    offsets, features = offsets.float().cpu(), features.float().cpu()
    labels = labels.long().cpu()
    steps, z = config.head_lbfgs_steps, config.head_clear_z
    per_class = torch.bincount(labels, minlength=num_classes)
    folds = min(config.head_folds, int(per_class.max()))
    if folds < 2 or labels.numel() < 2 * num_classes:
        weight, bias, scale = solve(offsets, features, labels, num_classes, math.inf, steps=steps)
        return FeatureHeadFit(weight, bias, scale, math.inf, 0, None, None, None)
    fold_of = stratified_folds(labels, folds, seed)
    if config.head_combine == "average":
        return _average_heads(offsets, features, labels, num_classes, fold_of, folds, config)
    start_correct, start_nll = _cross_validate(offsets, features, labels, num_classes, math.inf, fold_of, folds, steps)
    best: tuple[tuple[float, float], Candidate] = (_selection_key(start_correct, start_nll, config.head_select), math.inf)
    scores: dict[Candidate, tuple[float, float]] = {math.inf: (float(start_correct.float().mean()), float(start_nll.mean()))}
    likelihood_arm = config.head_test == "either" and int(per_class.min()) >= config.head_likelihood_min
    for penalty in config.head_penalties:
        correct, nll = _cross_validate(offsets, features, labels, num_classes, penalty, fold_of, folds, steps)
        passed = clearly_better(correct, start_correct, z)
        if not passed and likelihood_arm:
            gained, lost = _flips(correct, start_correct)
            _, recalibrated_nll = _cross_validate(offsets, features[:, :0], labels, num_classes, penalty, fold_of,
                                                  folds, steps)
            passed = gained >= lost and clearly_more_likely(nll, recalibrated_nll, z)
        key = _selection_key(correct, nll, config.head_select)
        if passed and key > best[0]:
            best = (key, penalty)
            scores[penalty] = (float(correct.float().mean()), float(nll.mean()))
    if config.head_family == "logistic+gaussian":
        for key, head, score in _passing_gaussian_heads(offsets, features, labels, num_classes, fold_of, folds,
                                                        (start_correct, start_nll), likelihood_arm, config):
            if key > best[0]:
                best, scores[head] = (key, head), score
    chosen = best[1]
    accuracy, mean_nll = scores[chosen]
    weight, bias, scale = solve_candidate(offsets, features, labels, num_classes, chosen, steps=steps)
    return FeatureHeadFit(weight, bias, scale, chosen, folds, accuracy, mean_nll, float(start_correct.float().mean()))


def _passing_gaussian_heads(offsets, features, labels, num_classes, fold_of, folds, start, likelihood_arm: bool,
                            config: MethodConfig) -> Iterator[tuple[tuple[float, float], GaussianHead, tuple[float, float]]]:
    """(selection key, head, (held-out accuracy, log-loss)) of each Gaussian head that passes the check."""
    start_correct, start_nll = start
    scores: dict[float, torch.Tensor | None] = {}  # per shrinkage: the fold fits every scale and weight share
    for head in gaussian.candidates(config.head_gaussian_shrinkage, config.head_gaussian_scales,
                                    config.head_gaussian_sentence_weights):
        if head.shrinkage not in scores:
            scores[head.shrinkage] = gaussian.held_out_scores(features, labels, num_classes, head.shrinkage,
                                                              fold_of, folds)
        if scores[head.shrinkage] is None:  # a fold leaves a class without spread (one image): no candidate
            continue
        logits = gaussian.held_out_logits(offsets, scores[head.shrinkage], head)
        correct, nll = logits.argmax(1) == labels, F.cross_entropy(logits, labels, reduction="none")
        # The likelihood arm against the sentence scores as they are: a Gaussian head has no
        # penalty with which to recalibrate them (experiments/head_gda_study.py, as designed).
        gained, lost = _flips(correct, start_correct)
        if clearly_better(correct, start_correct, config.head_clear_z) or (
                likelihood_arm and gained >= lost and clearly_more_likely(nll, start_nll, config.head_clear_z)):
            yield (_selection_key(correct, nll, config.head_select), head,
                   (float(correct.float().mean()), float(nll.mean())))


def _average_heads(offsets, features, labels, num_classes, fold_of, folds, config: MethodConfig) -> FeatureHeadFit:
    """Pseudo-Bayesian model averaging over the sentence scores and every penalty's head.

    Each candidate's weight is proportional to its prior times its held-out likelihood,
    ``exp(-sum of held-out log-loss)``: a candidate far behind gets next to nothing and close
    ones share. The sentence scores alone have prior ``config.head_start_prior``, the heads
    share the rest. Weights under ``AVERAGE_MIN_WEIGHT`` are dropped (the rest rescaled) to
    spare their final fits.
    """
    steps = config.head_lbfgs_steps
    penalties = (math.inf, *config.head_penalties)
    logits = [held_out_logits(offsets, features, labels, num_classes, p, fold_of, folds, steps) for p in penalties]
    log_likelihood = torch.stack([-F.cross_entropy(l, labels, reduction="sum") for l in logits]).double()
    start = config.head_start_prior
    log_prior = torch.tensor([math.log(start)] + [math.log((1 - start) / len(config.head_penalties))]
                             * len(config.head_penalties), dtype=torch.float64)
    shares = torch.softmax(log_likelihood + log_prior, dim=0)
    keep = shares >= AVERAGE_MIN_WEIGHT
    shares = shares * keep / (shares * keep).sum()
    mixture = tuple((p, float(w)) for p, w in zip(penalties, shares.tolist()) if w > 0)
    mixed = sum(float(w) * l for w, l in zip(shares.tolist(), logits))
    weight, bias, scale = solve_mixture(offsets, features, labels, num_classes, mixture, steps=steps)
    start_accuracy = float((logits[0].argmax(1) == labels).float().mean())
    return FeatureHeadFit(weight, bias, scale, max(mixture, key=lambda m: m[1])[0], folds,
                          float((mixed.argmax(1) == labels).float().mean()), float(F.cross_entropy(mixed, labels)),
                          start_accuracy, mixture)


def _selection_key(correct: torch.Tensor, nll: torch.Tensor, select: str) -> tuple[float, float]:
    """Larger is better: (-log-loss, accuracy) or (accuracy, -log-loss) on the held-out folds."""
    accuracy, neg_nll = float(correct.float().mean()), -float(nll.mean())
    return (neg_nll, accuracy) if select == "log-loss" else (accuracy, neg_nll)
