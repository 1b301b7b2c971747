"""Sampling the world: attribute combinations, hard-negative pairs, image-caption batches.

Attribute combinations are int arrays [N, F] (index into ``FAMILIES[family]``, -1 for an
absent conditional family) so the renderer can draw a whole batch at once.
"""

from __future__ import annotations

import numpy as np

from biomedvr_cli.sandbox.captions import caption_from_plan, caption_plan
from biomedvr_cli.sandbox.draw import FAMILY_NAMES, FI, IMAGE_SIZE, render_batch
from biomedvr_cli.sandbox.frames import add_frames
from biomedvr_cli.sandbox.vocabulary import CONDITIONAL, FAMILIES


# How often each family is the varied one in a hard-negative pair: morphology (shape,
# nucleus form, texture) is what a contrastive model learns last, so it gets more pairs.
HARD_WEIGHTS = {"size": 1.0, "shape": 3.0, "nucleus": 2.5, "nucleus_size": 1.0, "cytoplasm": 0.5,
                "granules": 1.5, "granule_colour": 1.0, "texture": 3.0}
_HARD_P = np.array([HARD_WEIGHTS[f] for f in FAMILY_NAMES]) / sum(HARD_WEIGHTS.values())


def fix_conditionals(attrs: np.ndarray) -> np.ndarray:
    """Set conditional families to -1 where their condition fails (in place), return attrs."""
    for fam, (other, absent_value) in CONDITIONAL.items():
        absent = attrs[:, FI[other]] == FAMILIES[other].index(absent_value)
        attrs[absent, FI[fam]] = -1
    return attrs


def sample_attrs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniformly random attribute combinations [n, F]."""
    cols = [rng.integers(0, len(FAMILIES[f]), n) for f in FAMILY_NAMES]
    return fix_conditionals(np.stack(cols, axis=1).astype(np.int64))


def hard_negative_pairs(rng: np.random.Generator, n_pairs: int) -> tuple[np.ndarray, list[str]]:
    """Pairs of combinations that differ in exactly one family: [2*n_pairs, F], varied family per pair.

    Rows 2i and 2i+1 form a pair. Contrastive batches built from such pairs hold negatives
    that only the varied attribute separates (the remedy for a model that ignores shape).
    """
    base = sample_attrs(rng, n_pairs)
    out = np.repeat(base, 2, axis=0)
    varied = []
    for i in range(n_pairs):
        fam = FAMILY_NAMES[int(rng.choice(len(FAMILY_NAMES), p=_HARD_P))]
        j = FI[fam]
        if fam == "granule_colour" and out[2 * i, j] < 0:  # give both a granule type first
            g = int(rng.integers(1, 3))
            out[2 * i : 2 * i + 2, FI["granules"]] = g
            out[2 * i : 2 * i + 2, j] = int(rng.integers(0, 2))
        a = out[2 * i, j]
        choices = [k for k in range(len(FAMILIES[fam])) if k != a]
        out[2 * i + 1, j] = choices[int(rng.integers(len(choices)))]
        if fam == "granules":  # moving between none and some granules changes granule colour's presence
            for r in (2 * i, 2 * i + 1):
                if out[r, j] != 0 and out[r, FI["granule_colour"]] < 0:
                    out[r, FI["granule_colour"]] = int(rng.integers(0, 2))
        varied.append(fam)
    return fix_conditionals(out), varied


def attrs_to_dict(row: np.ndarray) -> dict[str, str | None]:
    """One attribute row as {family: value word or None}."""
    return {f: (FAMILIES[f][int(row[i])] if row[i] >= 0 else None) for i, f in enumerate(FAMILY_NAMES)}


def pretraining_batch(
    rng: np.random.Generator, batch_size: int, *, hard_fraction: float = 0.5, size: int = IMAGE_SIZE,
    zoom_range: tuple[float, float] = (1.0, 1.0), frame_probability: float = 0.0, frame_max_fraction: float = 0.15,
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Images (float32 [B,S,S,3]), captions and attribute rows for one contrastive batch.

    ``hard_fraction`` of the batch comes as hard-negative pairs whose two captions use the
    same wording plan (so they differ only in the words of the varied attribute). Each image
    is drawn at a zoom uniform in ``zoom_range`` (scale augmentation; the two images of a
    pair share it, so the pair still differs only in its attribute).
    """
    n_pairs = int(batch_size * hard_fraction) // 2
    pairs, varied = hard_negative_pairs(rng, n_pairs)
    rest = sample_attrs(rng, batch_size - 2 * n_pairs)
    attrs = np.concatenate([pairs, rest], axis=0)
    captions: list[str] = []
    for i in range(n_pairs):
        plan = caption_plan(rng, must=(varied[i],))
        captions.append(caption_from_plan(attrs_to_dict(attrs[2 * i]), plan))
        captions.append(caption_from_plan(attrs_to_dict(attrs[2 * i + 1]), plan))
    for row in rest:
        captions.append(caption_from_plan(attrs_to_dict(row), caption_plan(rng)))
    zoom = rng.uniform(zoom_range[0], zoom_range[1], batch_size - n_pairs).astype(np.float32)
    zoom = np.concatenate([np.repeat(zoom[:n_pairs], 2), zoom[n_pairs:]])
    images = render_batch(attrs, rng, size=size, zoom=zoom)
    if frame_probability > 0:
        images = add_frames(images, rng, probability=frame_probability, max_fraction=frame_max_fraction,
                            n_pairs=n_pairs)
    return images, captions, attrs
