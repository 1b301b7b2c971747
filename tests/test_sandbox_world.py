"""The sandbox world: deterministic generation, captions without class names, shifts."""

from __future__ import annotations

import re

import numpy as np
import pytest

from biomedvr_cli.sandbox.captions import make_caption
from biomedvr_cli.sandbox.draw import FAMILY_NAMES, render_batch
from biomedvr_cli.sandbox.tasks import generate_task_arrays, list_tasks, load_task
from biomedvr_cli.sandbox.vocabulary import FAMILIES
from biomedvr_cli.sandbox.world import attrs_to_dict, hard_negative_pairs, pretraining_batch, sample_attrs


def test_task_arrays_are_deterministic_for_a_seed() -> None:
    task = load_task("blood-smear")
    a, ya = generate_task_arrays(task, 3, seed=5, shift="default")
    b, yb = generate_task_arrays(task, 3, seed=5, shift="default")
    c, _ = generate_task_arrays(task, 3, seed=6, shift="default")
    assert a.dtype == np.uint8 and a.shape == (15, 64, 64, 3)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert not np.array_equal(a, c)
    assert list(ya) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]


def test_train_and_test_splits_differ() -> None:
    task = load_task("cervical-cytology")
    tr, _ = generate_task_arrays(task, 2, seed=0, split="train")
    te, _ = generate_task_arrays(task, 2, seed=0, split="test")
    assert not np.array_equal(tr, te)


def test_pretraining_batch_is_deterministic_and_pairs_differ_in_one_family() -> None:
    x1, c1, a1 = pretraining_batch(np.random.default_rng([0, 3]), 16)
    x2, c2, a2 = pretraining_batch(np.random.default_rng([0, 3]), 16)
    assert np.array_equal(x1, x2) and c1 == c2 and np.array_equal(a1, a2)
    pairs, varied = hard_negative_pairs(np.random.default_rng(1), 50)
    for i, fam in enumerate(varied):
        diff = [FAMILY_NAMES[j] for j in np.nonzero(pairs[2 * i] != pairs[2 * i + 1])[0]]
        assert fam in diff
        assert set(diff) <= {fam, "granule_colour"}  # granules none<->some also toggles its colour


def test_captions_never_name_a_task_class() -> None:
    rng = np.random.default_rng(0)
    words = " ".join(make_caption(attrs_to_dict(a), rng) for a in sample_attrs(rng, 500)).lower()
    vocab = set(re.findall(r"[a-z-]+", words))
    for task in list_tasks():
        for name in task.class_names:
            assert name.lower() not in words
            specific = [w for w in name.lower().split() if w != "cell"]
            assert not any(w in vocab for w in specific), name


def test_renderer_is_fast_enough() -> None:
    import time

    rng = np.random.default_rng(0)
    attrs = sample_attrs(rng, 256)
    start = time.perf_counter()
    images = render_batch(attrs, rng)
    assert images.shape == (256, 64, 64, 3) and 0.0 <= images.min() and images.max() <= 1.0
    assert time.perf_counter() - start < 5.0  # about 0.25 s on one free core


@pytest.mark.parametrize("shift", ["stain", "blur", "noise", "all", "stain+blur"])
def test_shifts_change_pixels(shift: str) -> None:
    task = load_task("blood-smear")
    clean, _ = generate_task_arrays(task, 2, seed=1, shift="none")
    shifted, _ = generate_task_arrays(task, 2, seed=1, shift=shift)
    assert np.abs(clean.astype(int) - shifted.astype(int)).mean() > 1.0


def test_every_family_has_words_and_prompts() -> None:
    from biomedvr_cli.sandbox.vocabulary import SYNONYMS, family_prompt

    for fam, values in FAMILIES.items():
        for v in values:
            assert SYNONYMS[fam][v]
            assert v.split("-")[0] in family_prompt(fam, v) or v == "none"


def test_caption_phrases_cover_every_token_a_caption_uses() -> None:
    from biomedvr_cli.sandbox.modelio import caption_token_ids, get_tokenizer

    tokenizer = get_tokenizer()
    allowed = caption_token_ids(tokenizer)
    rng = np.random.default_rng(7)
    for a in sample_attrs(rng, 400):
        caption = make_caption(attrs_to_dict(a), rng, full=bool(rng.random() < 0.3))
        assert set(tokenizer.encode(caption)) <= allowed, caption
    # and no class name of a built-in task is made of caption tokens only
    for task in list_tasks():
        for name in task.class_names:
            assert not set(tokenizer.encode(name)) <= allowed, name
