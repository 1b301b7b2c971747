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
    assert a.dtype == np.uint8 and a.shape == (15, 96, 96, 3)
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


def test_renderer_draws_valid_images_at_the_world_size() -> None:
    rng = np.random.default_rng(0)
    images = render_batch(sample_attrs(rng, 64), rng)
    assert images.shape == (64, 96, 96, 3) and 0.0 <= images.min() and images.max() <= 1.0


def _blue_area(images: np.ndarray) -> np.ndarray:
    """Pixels of blue cytoplasm: neither the background nor the red cells are blue."""
    return ((images[..., 2] - images[..., 0]) > 0.12).sum(axis=(1, 2))


def test_zoom_scales_the_cell_and_size_stays_a_cue_at_zoom_one() -> None:
    """Scale augmentation changes the field of view: zoom 0.7 shrinks a cell's area by about 0.49."""
    from biomedvr_cli.sandbox.draw import FI

    attrs = sample_attrs(np.random.default_rng(0), 48)
    attrs[:, FI["cytoplasm"]] = 1  # blue, so the cell is told from background and red cells by colour
    full = render_batch(attrs, np.random.default_rng(1))
    small = render_batch(attrs, np.random.default_rng(1), zoom=np.full(48, 0.7, np.float32))
    assert 0.38 < _blue_area(small).mean() / _blue_area(full).mean() < 0.6
    sizes = [_blue_area(full[attrs[:, FI["size"]] == v]).mean() for v in range(3)]
    assert sizes[0] < sizes[1] < sizes[2] and sizes[2] > 2.5 * sizes[0]


def test_frames_are_constant_colour_borders_shared_by_each_pair() -> None:
    from biomedvr_cli.sandbox.frames import add_frames

    rng = np.random.default_rng(0)
    images = render_batch(sample_attrs(rng, 40), rng)
    framed = add_frames(images, np.random.default_rng(2), probability=1.0, max_fraction=0.15, n_pairs=5)
    assert framed.shape == images.shape and not np.shares_memory(framed, images)
    for b in range(40):
        rows = framed[b, 0], framed[b, -1]
        cols = framed[b, :, 0], framed[b, :, -1]
        border = [e for e in (*rows, *cols) if np.ptp(e, axis=0).max() < 1e-6]
        assert len(border) >= 2, b  # letterbox (2 sides) or matte (4 sides), one colour
    def frame(image: np.ndarray) -> tuple:
        """Which edges are one colour, and the corner colour."""
        edges = (image[0], image[-1], image[:, 0], image[:, -1])
        return tuple(bool(np.ptp(e, axis=0).max() < 1e-6) for e in edges), tuple(np.round(image[0, 0], 6))

    for i in range(5):  # the two images of a hard-negative pair share their frame
        assert frame(framed[2 * i]) == frame(framed[2 * i + 1]), i
    untouched = add_frames(images, np.random.default_rng(2), probability=0.0, max_fraction=0.15)
    assert np.array_equal(untouched, images)


def test_pretraining_batch_zoom_and_frames_are_deterministic() -> None:
    kwargs = {"zoom_range": (0.7, 1.1), "frame_probability": 0.3, "frame_max_fraction": 0.15}
    x1, c1, _ = pretraining_batch(np.random.default_rng([0, 4]), 32, **kwargs)
    x2, c2, _ = pretraining_batch(np.random.default_rng([0, 4]), 32, **kwargs)
    plain, _, _ = pretraining_batch(np.random.default_rng([0, 4]), 32)
    assert np.array_equal(x1, x2) and c1 == c2 and x1.shape == (32, 96, 96, 3)
    assert not np.array_equal(x1, plain)
    always, _, _ = pretraining_batch(np.random.default_rng([0, 4]), 32, frame_probability=1.0)
    for image in always:  # the batch really passes through the frames
        edges = (image[0], image[-1], image[:, 0], image[:, -1])
        assert sum(np.ptp(e, axis=0).max() < 1e-6 for e in edges) >= 2


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
