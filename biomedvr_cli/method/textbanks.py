"""Text banks: every sentence encoded once, L2-normalised, with its owning class.

Banks are computed once per fit and stored in the adapter, so ``eval`` and ``predict``
never run the text tower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

# Used when no attributes file is given (the AR baseline): the class name in templates.
CLASS_NAME_TEMPLATES = (
    "a photo of a {}.",
    "a microscopy image of a {}.",
    "a medical image showing {}.",
    "an image of {}, a type of finding.",
)
BANK_SETS = ("descriptive", "distinctive", "confusion")


@dataclass
class TextBank:
    """Sentence embeddings [M, D] and the class index that owns each sentence."""

    embeddings: torch.Tensor
    owner: torch.Tensor
    sentences: list[str]

    def __len__(self) -> int:
        return len(self.sentences)


def collect_sentences(
    classes: Sequence[str],
    sets: Mapping[str, Mapping[str, Sequence[str]]],
    set_name: str,
    max_per_class: int | None,
) -> tuple[list[str], list[int]]:
    """Sentences of one set in class order, at most ``max_per_class`` each (the method's m)."""
    sentences: list[str] = []
    owners: list[int] = []
    for idx, name in enumerate(classes):
        chosen = list(sets[name][set_name])
        if max_per_class is not None:
            chosen = chosen[:max_per_class]
        sentences.extend(chosen)
        owners.extend([idx] * len(chosen))
    return sentences, owners


def class_name_sentences(classes: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """Class-name templates standing in for attribute sets (no confusion set)."""
    out = {}
    for name in classes:
        texts = [template.format(name) for template in CLASS_NAME_TEMPLATES]
        out[name] = {"descriptive": texts, "distinctive": texts, "confusion": []}
    return out


def encode_bank(encode_texts, sentences: list[str], owners: list[int]) -> TextBank:
    """Encode sentences with the backbone's own tokenizer (via ``encode_texts``)."""
    embeddings = encode_texts(sentences)
    return TextBank(embeddings=embeddings, owner=torch.tensor(owners, dtype=torch.long), sentences=sentences)
