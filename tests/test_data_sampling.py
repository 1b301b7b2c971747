"""Few-shot sampling (biomedvr_cli.data.sampling)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from biomedvr_cli.data import ImageRecord, sample_few_shot, test_records
from biomedvr_cli.errors import InvalidInputError, UsageError


def _records(counts: dict[str, int], *, split: str | None = None, groups: int | None = None) -> list[ImageRecord]:
    out = []
    for label, n in counts.items():
        for i in range(n):
            group = f"{label}-p{i % groups}" if groups else None
            out.append(ImageRecord(Path(f"/data/{label}/{split or 'pool'}-{i:03d}.png"), label, split, group))
    return out


def _paths(records: list[ImageRecord]) -> list[str]:
    return [str(r.path) for r in records]


def test_k_per_class_and_default_validation_size() -> None:
    records = _records({"a": 30, "b": 30})
    split = sample_few_shot(records, ["a", "b"], 8, seed=0)
    for label in ("a", "b"):
        assert sum(r.label == label for r in split.train) == 8
        assert sum(r.label == label for r in split.val) == 4  # min(8, 4)
    assert not set(_paths(split.train)) & set(_paths(split.val))
    assert split.warnings == []
    small = sample_few_shot(records, ["a", "b"], 2, seed=0)
    assert len(small.val) == 4  # min(2, 4) per class
    none = sample_few_shot(records, ["a", "b"], 2, seed=0, val_shots=0)
    assert none.val == []


def test_deterministic_and_independent_of_listing_order() -> None:
    records = _records({"a": 25, "b": 25, "c": 25})
    first = sample_few_shot(records, ["a", "b", "c"], 4, seed=7)
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    again = sample_few_shot(shuffled, ["a", "b", "c"], 4, seed=7)
    assert _paths(first.train) == _paths(again.train) and _paths(first.val) == _paths(again.val)
    other = sample_few_shot(records, ["a", "b", "c"], 4, seed=8)
    assert _paths(other.train) != _paths(first.train)
    # Adding a class leaves the draws of the others unchanged.
    more = sample_few_shot(records + _records({"d": 10}), ["a", "b", "c", "d"], 4, seed=7)
    assert [p for p in _paths(more.train) if "/d/" not in p] == _paths(first.train)


def test_test_split_is_never_drawn_and_explicit_val_is_used() -> None:
    records = _records({"a": 10, "b": 10}, split="train") + _records({"a": 6, "b": 6}, split="val")
    records += _records({"a": 5, "b": 5}, split="test")
    split = sample_few_shot(records, ["a", "b"], 3, seed=1)
    assert all(r.split == "train" for r in split.train)
    assert all(r.split == "val" for r in split.val) and len(split.val) == 6
    assert test_records(records) == [r for r in records if r.split == "test"]
    assert len(test_records(records)) == 10


@pytest.mark.parametrize("seed", range(6))
def test_groups_are_never_shared(seed: int) -> None:
    # Five patients per class, several images each; also a patient with images in both classes.
    records = _records({"a": 20, "b": 20}, groups=5)
    records += [ImageRecord(Path(f"/data/mixed/{i}.png"), "ab"[i % 2], None, "shared") for i in range(4)]
    split = sample_few_shot(records, ["a", "b"], 4, seed=seed, val_shots=2)
    train_groups = {r.group for r in split.train}
    val_groups = {r.group for r in split.val}
    assert not train_groups & val_groups
    assert len(split.train) == 8 and len(split.val) == 4


def test_groups_with_explicit_val_split_stay_apart() -> None:
    train = [ImageRecord(Path(f"/t/{i}.png"), "a", "train", f"p{i % 3}") for i in range(9)]
    val = [ImageRecord(Path(f"/v/{i}.png"), "a", "val", f"p{i % 3 + 2}") for i in range(9)]  # p2 is in both
    split = sample_few_shot(train + val, ["a"], 3, seed=0, val_shots=2)
    assert not {r.group for r in split.train} & {r.group for r in split.val}


def test_whole_groups_when_a_single_greedy_pass_would_fail() -> None:
    # Sizes 7, 1 and 4: 8 train + 4 val only works as {7, 1} / {4}.
    sizes = {"g7": 7, "g1": 1, "g4": 4}
    records = [ImageRecord(Path(f"/d/{g}-{i}.png"), "a", None, g) for g, n in sizes.items() for i in range(n)]
    for seed in range(10):
        split = sample_few_shot(records, ["a"], 8, seed=seed, val_shots=4)
        assert {r.group for r in split.val} == {"g4"}


def test_too_few_images_names_the_class() -> None:
    records = _records({"big": 20, "tiny": 5})
    with pytest.raises(InvalidInputError, match=r"class 'tiny' has 5 images to draw from") as info:
        sample_few_shot(records, ["big", "tiny"], 8, seed=0)
    assert info.value.exit_code == 3 and "allow" in info.value.hint
    with pytest.raises(InvalidInputError, match=r"class 'empty' has 0"):
        sample_few_shot(records, ["big", "empty"], 1, seed=0)
    grouped = _records({"a": 12}, groups=1)
    with pytest.raises(InvalidInputError, match="in 1 groups"):
        sample_few_shot(grouped, ["a"], 4, seed=0)


def test_allow_fewer_takes_what_there_is_with_a_warning() -> None:
    records = _records({"big": 20, "tiny": 3, "one": 1})
    split = sample_few_shot(records, ["big", "one", "tiny"], 8, seed=0, allow_fewer=True)
    count = {(label, side): 0 for label in ("big", "tiny", "one") for side in ("train", "val")}
    for side, rows in (("train", split.train), ("val", split.val)):
        for r in rows:
            count[r.label, side] += 1
    assert count["big", "train"] == 8 and count["big", "val"] == 4
    assert count["tiny", "train"] == 2 and count["tiny", "val"] == 1
    assert count["one", "train"] == 1 and count["one", "val"] == 0
    assert len(split.warnings) == 2 and any("'tiny'" in w for w in split.warnings)
    # Still at least one training image per class.
    with pytest.raises(InvalidInputError, match="'none' has 0"):
        sample_few_shot(records, ["big", "none"], 2, seed=0, allow_fewer=True)


def test_usage_errors() -> None:
    records = _records({"a": 5})
    with pytest.raises(UsageError):
        sample_few_shot(records, ["a"], 0, seed=0)
    with pytest.raises(UsageError):
        sample_few_shot(records, ["a"], 1, seed=0, val_shots=-1)
