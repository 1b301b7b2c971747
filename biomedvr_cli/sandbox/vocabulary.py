"""The world's attribute vocabulary: families, their values, and the words captions use.

This is data: the renderer maps each value to pixels, the caption builder maps it to
words. ``granule_colour`` only exists when ``granules`` is not ``none``.
"""

from __future__ import annotations

# family -> ordered values. The value strings are the canonical words (used in task files).
FAMILIES: dict[str, tuple[str, ...]] = {
    "size": ("small", "medium", "large"),
    "shape": ("round", "oval", "irregular"),
    "nucleus": ("round", "kidney-shaped", "bilobed", "multilobed"),
    "nucleus_size": ("small", "large"),
    "cytoplasm": ("pink", "blue", "grey"),
    "granules": ("none", "fine", "coarse"),
    "granule_colour": ("red", "purple"),
    "texture": ("smooth", "vacuolated"),
}

# Families the shipped model did not learn to see (measured: at chance for zero-shot and for a
# linear probe on its image features). They are still rendered and were captioned during
# pretraining, but no built-in task relies on them and the per-family property checks skip
# them ("drop a family rather than keep one it cannot see"). See the README's sandbox section.
UNSEEN_FAMILIES: tuple[str, ...] = ("shape",)
KEPT_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f not in UNSEEN_FAMILIES)

# Families whose value only exists when a condition on another family holds.
CONDITIONAL: dict[str, tuple[str, str]] = {"granule_colour": ("granules", "none")}  # absent when granules == none

# Synonyms captions draw from (the first one is the canonical word).
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "size": {
        "small": ("small", "tiny", "little"),
        "medium": ("medium-sized", "mid-sized", "medium"),
        "large": ("large", "big", "enlarged"),
    },
    "shape": {
        "round": ("round", "circular", "spherical"),
        "oval": ("oval", "elongated", "elliptical"),
        "irregular": ("irregular", "misshapen", "irregularly outlined"),
    },
    "nucleus": {
        "round": ("round", "circular", "spherical"),
        "kidney-shaped": ("kidney-shaped", "bean-shaped", "indented"),
        "bilobed": ("bilobed", "two-lobed", "double-lobed"),
        "multilobed": ("multilobed", "many-lobed", "lobulated"),
    },
    "nucleus_size": {
        "small": ("small", "compact", "condensed"),
        "large": ("large", "big", "prominent"),
    },
    "cytoplasm": {
        "pink": ("pink", "pinkish", "rose"),
        "blue": ("blue", "bluish", "pale blue"),
        "grey": ("grey", "greyish", "dull grey"),
    },
    "granules": {
        "none": ("no granules", "no granulation", "agranular"),
        "fine": ("fine", "dust-like", "delicate"),
        "coarse": ("coarse", "large", "chunky"),
    },
    "granule_colour": {
        "red": ("red", "orange-red", "reddish"),
        "purple": ("purple", "dark purple", "violet"),
    },
    "texture": {
        "smooth": ("smooth", "homogeneous", "even"),
        "vacuolated": ("vacuolated", "foamy", "bubbly"),
    },
}

# Prompts for per-family zero-shot (one prompt per value, the canonical words only).
FAMILY_PROMPTS: dict[str, str] = {
    "size": "a {v} cell.",
    "shape": "a {v} cell.",
    "nucleus": "a cell with a {v} nucleus.",
    "nucleus_size": "a cell with a {v} nucleus.",
    "cytoplasm": "a cell with {v} cytoplasm.",
    "granules": "a cell with {v} granules.",
    "granule_colour": "a cell with {v} granules.",
    "texture": "a cell with {v} cytoplasm.",
}


def family_prompt(family: str, value: str) -> str:
    """The zero-shot prompt for one value of one family."""
    if family == "granules" and value == "none":
        return "a cell with no granules."
    return FAMILY_PROMPTS[family].format(v=value)


def is_present(family: str, attrs: dict[str, str | None]) -> bool:
    """Whether ``family`` has a value for an attribute combination (conditional families)."""
    cond = CONDITIONAL.get(family)
    return cond is None or attrs.get(cond[0]) != cond[1]
