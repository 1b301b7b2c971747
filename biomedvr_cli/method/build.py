"""Build a BioMedVR head for a backbone: encode the sentence banks once, then the head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch

from biomedvr_cli.method.config import MethodConfig
from biomedvr_cli.method.head import BioMedVRHead
from biomedvr_cli.method.textbanks import BANK_SETS, collect_sentences, encode_bank


def build_head(backbone, classes: Sequence[str], sets: Mapping[str, Mapping[str, Sequence[str]]],
               method: MethodConfig, *, seed: int | None = None) -> tuple[BioMedVRHead, dict[str, list[str]]]:
    """The head and the sentences it scores, per set (``sets``: class -> set name -> sentences).

    ``seed`` fixes the head's random initial weights (mask net, per-sample gate), so that a
    fit is repeatable in any process. The confusion set is left out when the method has no
    negative expert, or when no class has confusion sentences (class-name templates).
    """
    banks, used = {}, {}
    for set_name in BANK_SETS:
        if set_name == "confusion" and not method.negative:
            continue
        sentences, owners = collect_sentences(classes, sets, set_name, method.m)
        if sentences:
            banks[set_name] = encode_bank(backbone.encode_texts, sentences, owners)
            used[set_name] = sentences
    if seed is not None:
        torch.manual_seed(seed)
    head = BioMedVRHead(method, len(classes), backbone.image_size, backbone.embed_dim, backbone.logit_scale, banks)
    return head, used


def trained_config(method: MethodConfig, head: BioMedVRHead) -> MethodConfig:
    """The method as actually trained: no negative expert when there were no confusion sentences."""
    if method.negative and not head.use_negative:
        return replace(method, negative=False, confusion_loss=False)
    return method
