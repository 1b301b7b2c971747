"""Captions in the world's words: varied templates and synonyms, never a class name.

A caption mentions a random subset of the attribute families (always the ones listed in
``must``) in a random order, each with a random synonym. Two captions built with the same
``rng`` state and the same plan differ only in the words of the attributes that differ:
that is how pretraining builds hard-negative pairs.
"""

from __future__ import annotations

import numpy as np

from biomedvr_cli.sandbox.vocabulary import FAMILIES, SYNONYMS

FAMILY_NAMES = tuple(FAMILIES)
_NOUNS = ("cell", "cell", "stained cell", "single cell")
_OPENERS = ("", "", "a microscopy image of ", "an image of ", "a smear showing ", "a close-up of ")
# The fixed words of the template in ``caption_from_plan`` (kept in step with it; a test checks
# that sampled captions use no token outside ``caption_phrases()``).
_GLUE = ("a", "with", "and", ",", ".", "nucleus", "cytoplasm", "granules")


def caption_phrases() -> tuple[str, ...]:
    """Every word or phrase a caption can contain: the world's whole pretraining vocabulary."""
    synonyms = [s for values in SYNONYMS.values() for words in values.values() for s in words]
    return tuple(dict.fromkeys([*synonyms, *_NOUNS, *(o for o in _OPENERS if o), *_GLUE]))


def caption_plan(rng: np.random.Generator, must: tuple[str, ...] = ()) -> dict:
    """Draw the wording choices of one caption (subset, order, synonyms, opener)."""
    optional = [f for f in FAMILY_NAMES if f not in must]
    # From one attribute (like a zero-shot prompt) to all of them.
    k = int(rng.integers(0 if must else 1, len(optional) + 1))
    chosen = set(must) | set(rng.choice(optional, size=k, replace=False).tolist())
    return {
        "families": chosen,
        "syn": {f: int(rng.integers(0, 3)) for f in FAMILY_NAMES},
        "opener": _OPENERS[int(rng.integers(len(_OPENERS)))],
        "noun": _NOUNS[int(rng.integers(len(_NOUNS)))],
        "order": rng.permutation(3).tolist(),
        "nuc_first": bool(rng.random() < 0.5),
    }


def _w(family: str, value: str, plan: dict) -> str:
    return SYNONYMS[family][value][plan["syn"][family]]


def caption_from_plan(attrs: dict[str, str | None], plan: dict) -> str:
    """Render one caption for an attribute combination under a wording plan."""
    fams = plan["families"]
    head = []
    if "size" in fams:
        head.append(_w("size", attrs["size"], plan))
    if "shape" in fams:
        head.append(_w("shape", attrs["shape"], plan))
    subject = f"{plan['opener']}a {' '.join(head + [plan['noun']])}"
    clauses: list[str] = []
    # nucleus clause
    nuc_words = []
    if "nucleus_size" in fams:
        nuc_words.append(_w("nucleus_size", attrs["nucleus_size"], plan))
    if "nucleus" in fams:
        nuc_words.append(_w("nucleus", attrs["nucleus"], plan))
    if nuc_words:
        clauses.append(f"a {' '.join(nuc_words)} nucleus")
    # cytoplasm clause
    cyto_words = []
    if "texture" in fams:
        cyto_words.append(_w("texture", attrs["texture"], plan))
    if "cytoplasm" in fams:
        cyto_words.append(_w("cytoplasm", attrs["cytoplasm"], plan))
    if cyto_words:
        clauses.append(f"{' '.join(cyto_words)} cytoplasm")
    # granule clause
    if "granules" in fams or ("granule_colour" in fams and attrs.get("granule_colour")):
        g = attrs["granules"]
        if g == "none":
            clauses.append(_w("granules", "none", plan) if "granules" in fams else "")
        else:
            words = []
            if "granules" in fams:
                words.append(_w("granules", g, plan))
            if "granule_colour" in fams and attrs.get("granule_colour"):
                words.append(_w("granule_colour", attrs["granule_colour"], plan))
            clauses.append(f"{' '.join(words)} granules")
    clauses = [c for c in clauses if c]
    order = [i for i in plan["order"] if i < len(clauses)]
    clauses = [clauses[i] for i in order]
    if not clauses:
        return subject + "."
    if len(clauses) == 1:
        return f"{subject} with {clauses[0]}."
    return f"{subject} with {', '.join(clauses[:-1])} and {clauses[-1]}."


def make_caption(attrs: dict[str, str | None], rng: np.random.Generator, *, full: bool = False) -> str:
    """One random caption for an attribute combination (``full``: mention every family)."""
    return caption_from_plan(attrs, caption_plan(rng, must=FAMILY_NAMES if full else ()))
