"""Few-shot sampling: K training images per class plus a disjoint validation split.

Rules:
- The training pool is every record whose split is None or "train". If any record has
  split "val", validation images are drawn from those; otherwise from the pool, disjoint
  from the training draw. Records with split "test" are never drawn.
- The draw depends only on the seed and the set of records, not on their listing order
  (records are sorted first), and each class has its own random stream, so adding a class
  does not change the others' draws (groups shared between classes aside).
- With group (patient) ids, whole groups go to one side: a group that gives any image to
  training gives none to validation and vice versa, and a group with any image in the
  test split gives none to either (those images are left out, with a warning that counts
  them, never naming a group). Images without a group id each form their own group.
- A class that cannot supply K training + V validation images is an error naming the
  class and its count, unless ``allow_fewer``: then it takes what there is (splitting a
  short class in proportion K:V, at least one training image) and a warning says so.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from biomedvr_cli.data.records import ImageRecord
from biomedvr_cli.errors import InvalidInputError, UsageError

_DEFAULT_MAX_VAL_SHOTS = 4


def default_val_shots(shots: int) -> int:
    """Validation images per class when the user gives none: ``min(shots, 4)``."""
    return min(shots, _DEFAULT_MAX_VAL_SHOTS)


# Tries with fresh random orders when whole-group assignment misses a target; cheap and
# deterministic, and it rescues most cases a single greedy pass gets wrong.
_ATTEMPTS = 16
_FEWER_HINT = "add images of that class, lower --shots or --val-shots, or pass --allow-fewer to use what there is"
_EMPTY_HINT = "add images of that class (--allow-fewer cannot draw from none)"
_GROUP_HINT = ("put each patient/group on one side only (all its images in training or all in test), or check which "
               "column groups the images (--group-column)")

GroupKey = tuple[str, str]


@dataclass
class FewShotSplit:
    """The drawn training and validation records, and warnings for the user."""

    train: list[ImageRecord]
    val: list[ImageRecord]
    warnings: list[str] = field(default_factory=list)


def test_records(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """Records whose split is ``"test"`` (for eval and benchmark)."""
    return [r for r in records if r.split == "test"]


test_records.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name


def without_test_groups(pool: Sequence[ImageRecord], test: Sequence[ImageRecord]) -> tuple[list[ImageRecord], str | None]:
    """``pool`` less the images whose group also has images in ``test``, and a warning counting them (or None).

    The warning gives counts only: group values are patient identifiers and are never shown.
    """
    test_groups = {r.group for r in test if r.group is not None}
    if not test_groups:
        return list(pool), None
    kept = [r for r in pool if r.group not in test_groups]
    dropped = len(pool) - len(kept)
    if not dropped:
        return kept, None
    groups = len({r.group for r in pool if r.group in test_groups})
    return kept, (f"{dropped} image(s) of {groups} group(s) that also have images in the test split were left out "
                  "of training and validation, so that no patient/group is on both sides")


def _class_seed(seed: int, name: str) -> bytes:
    """The seed of one class's random stream.

    The same bytes ``random.Random`` would take from the text for any UTF-8 name (so draws
    are unchanged), and still a seed for a name holding undecodable file-name bytes.
    """
    return f"biomedvr-few-shot:{seed}:{name}".encode("utf-8", "surrogateescape")


def _sort_key(record: ImageRecord) -> tuple[str, str, str, str]:
    return (record.label or "", str(record.path), record.split or "", record.group or "")


def _group_key(record: ImageRecord) -> GroupKey:
    return ("group", record.group) if record.group is not None else ("image", str(record.path))


@dataclass
class _Draw:
    train: list[ImageRecord]
    val: list[ImageRecord]
    owners: dict[GroupKey, str]
    score: tuple[int, int]


def _by_group(records: list[ImageRecord]) -> dict[GroupKey, list[ImageRecord]]:
    groups: dict[GroupKey, list[ImageRecord]] = {}
    for record in records:
        groups.setdefault(_group_key(record), []).append(record)
    return groups


def _fill(
    groups: dict[GroupKey, list[ImageRecord]],
    role: str,
    target: int,
    owners: dict[GroupKey, str],
    taken: set[int],
    rng: random.Random,
) -> list[ImageRecord]:
    """Take up to ``target`` images from whole groups not owned by the other side."""
    order = sorted(groups)
    rng.shuffle(order)
    out: list[ImageRecord] = []
    for key in order:
        if len(out) >= target:
            break
        if owners.get(key, role) != role:
            continue
        free = [r for r in groups[key] if id(r) not in taken]
        if not free:
            continue
        rng.shuffle(free)
        chosen = free[: target - len(out)]
        owners[key] = role
        taken.update(id(r) for r in chosen)
        out.extend(chosen)
    return out


def _draw_class(
    train_pool: list[ImageRecord],
    val_pool: list[ImageRecord],
    targets: tuple[int, int],
    owners: dict[GroupKey, str],
    rng: random.Random,
) -> _Draw:
    """Best of a few randomised whole-group draws for one class (first that meets both targets)."""
    train_groups, val_groups = _by_group(train_pool), _by_group(val_pool)
    best: _Draw | None = None
    for attempt in range(_ATTEMPTS):
        trial = dict(owners)
        taken: set[int] = set()
        # Odd attempts fill validation first: with big groups this leaves training its share.
        if attempt % 2 == 0:
            train = _fill(train_groups, "train", targets[0], trial, taken, rng)
            val = _fill(val_groups, "val", targets[1], trial, taken, rng)
        else:
            val = _fill(val_groups, "val", targets[1], trial, taken, rng)
            train = _fill(train_groups, "train", targets[0], trial, taken, rng)
        missing = (targets[0] - len(train)) + (targets[1] - len(val))
        draw = _Draw(train, val, trial, (missing, targets[0] - len(train)))
        if best is None or draw.score < best.score:
            best = draw
        if missing == 0 or len(train_groups) + len(val_groups) <= 1:
            break
    assert best is not None
    return best


def sample_few_shot(
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    shots: int,
    *,
    seed: int,
    val_shots: int | None = None,
    allow_fewer: bool = False,
    unreadable: Sequence[ImageRecord] = (),
) -> FewShotSplit:
    """Draw ``shots`` training and ``val_shots`` (default ``min(shots, 4)``) validation images per class.

    See the module docstring for the rules. Raises :class:`UsageError` for ``shots < 1``
    and :class:`InvalidInputError` for a class that is too small (unless ``allow_fewer``).
    ``unreadable`` lists images already left out because they could not be decoded, so that
    a class made too small by them says so.
    """
    if shots < 1:
        raise UsageError(f"shots must be at least 1, got {shots}", "pass --shots 1 or more")
    val_target = default_val_shots(shots) if val_shots is None else val_shots
    if val_target < 0:
        raise UsageError(f"validation shots must be 0 or more, got {val_target}", "pass 0 to skip validation")
    wanted = set(classes)
    candidates = [r for r in records if r.label in wanted and r.split != "test"]
    before = Counter(r.label for r in candidates)
    candidates, leak_warning = without_test_groups(candidates, test_records(records))
    left_out = before - Counter(r.label for r in candidates)  # per class, for the shortfall message
    usable = sorted(candidates, key=_sort_key)
    explicit_val = any(r.split == "val" for r in usable)
    grouped = any(r.group is not None for r in usable)

    pools: dict[str, tuple[list[ImageRecord], list[ImageRecord]]] = {}
    for name in dict.fromkeys(classes):
        in_class = [r for r in usable if r.label == name]
        train_pool = [r for r in in_class if r.split != "val"]
        pools[name] = (train_pool, [r for r in in_class if r.split == "val"] if explicit_val else train_pool)

    # Scarcest classes choose their groups first, leaving shared groups to those that need them.
    order = sorted(pools, key=lambda c: (len(_by_group(pools[c][0] + pools[c][1])), c))
    owners: dict[GroupKey, str] = {}
    train: list[ImageRecord] = []
    val: list[ImageRecord] = []
    warnings: list[str] = [leak_warning] if leak_warning else []
    for name in order:
        train_pool, val_pool = pools[name]
        targets = _targets(len(train_pool), len(val_pool), shots, val_target, explicit_val, allow_fewer)
        rng = random.Random(_class_seed(seed, name))
        draw = _draw_class(train_pool, val_pool, targets, owners, rng)
        short = len(draw.train) < shots or len(draw.val) < val_target
        if short and (not allow_fewer or not draw.train):
            message = _shortfall(name, train_pool, val_pool, shots, val_target, explicit_val, grouped)
            bad = sum(1 for r in unreadable if r.label == name)
            if bad:
                message += f" ({bad} other image(s) of this class could not be read and were left out)"
            if left_out[name]:
                message += (f" ({left_out[name]} image(s) of this class were left out: their patient/group also has "
                            "images in the test split)")
            none_left = not (train_pool or val_pool)  # --allow-fewer cannot draw from none
            raise InvalidInputError(message, _GROUP_HINT if left_out[name] else
                                    _EMPTY_HINT if allow_fewer or none_left else _FEWER_HINT)
        if short:
            warnings.append(
                f"class '{name}': only {len(draw.train)} training and {len(draw.val)} validation images "
                f"(asked for {shots} + {val_target})"
            )
        owners = draw.owners
        train.extend(draw.train)
        val.extend(draw.val)

    rank = {name: i for i, name in enumerate(dict.fromkeys(classes))}
    train.sort(key=lambda r: (rank[r.label or ""], str(r.path)))
    val.sort(key=lambda r: (rank[r.label or ""], str(r.path)))
    return FewShotSplit(train=train, val=val, warnings=warnings)


def _targets(
    n_train: int, n_val: int, shots: int, val_shots: int, explicit_val: bool, allow_fewer: bool
) -> tuple[int, int]:
    """How many to draw: the request, or with ``allow_fewer`` what a short class can give."""
    if not allow_fewer:
        return shots, val_shots
    if explicit_val:
        return min(shots, n_train), min(val_shots, n_val)
    if n_train >= shots + val_shots:
        return shots, val_shots
    # A short shared pool is split in proportion shots:val_shots, training first.
    val_part = min(val_shots, n_train * val_shots // (shots + val_shots))
    return n_train - val_part, val_part


def _shortfall(
    name: str,
    train_pool: list[ImageRecord],
    val_pool: list[ImageRecord],
    shots: int,
    val_shots: int,
    explicit_val: bool,
    grouped: bool,
) -> str:
    """The error message for a class that is too small."""
    need = f"{shots} for training + {val_shots} for validation are needed"
    if explicit_val:
        have = f"{len(train_pool)} training images and {len(val_pool)} in the val split"
    else:
        have = f"{len(train_pool)} images to draw from"
    if grouped:
        groups = len(_by_group(train_pool + (val_pool if explicit_val else [])))
        return f"class '{name}' has {have} in {groups} groups; {need}, without sharing a group"
    return f"class '{name}' has {have}; {need}"
