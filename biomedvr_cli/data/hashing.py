"""Salted hashes of the pixels an adapter was fitted on, so ``eval`` can spot reuse without storing identities.

An adapter keeps, for each support and validation image, the first 64 bits of an
HMAC-SHA-256 of the *decoded* pixels (the ``size x size`` RGB array the backbone sees),
keyed with a random salt made for that adapter and stored in it. So:

- a DICOM header (patient name, ids, dates) never enters a hash: only pixels do;
- the same image gives different hashes in two adapters, so adapters cannot be matched
  with each other, and a hash cannot be looked up against file checksums (SHA-256 of
  files, PACS hashes) or precomputed tables;
- whoever holds the adapter *and* an image can still tell whether that image was in the
  support set: that is how ``eval`` warns about optimistic metrics.

Adapters written before salted hashes (no salt recorded) stored the SHA-256 of each
file; those are still compared that way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from pathlib import Path

import torch

#: Hex digits kept of each hash: 64 bits, enough to make a chance match among thousands of images negligible.
HASH_HEX = 16
_DOMAIN = b"biomedvr-pixels-v1"


def new_hash_salt() -> str:
    """A fresh random salt (128 bits, hex) for one adapter."""
    return secrets.token_hex(16)


def pixel_hashes(images: torch.Tensor, salt: str) -> list[str]:
    """Salted hashes of uint8 images ``[N, 3, H, W]``, in order."""
    if not salt:
        raise ValueError("pixel hashes need a salt")
    key = bytes.fromhex(salt)
    out = []
    for image in images:
        pixels = image.detach().to("cpu", torch.uint8).contiguous()
        digest = hmac.new(key, _DOMAIN + repr(tuple(pixels.shape)).encode("ascii"), hashlib.sha256)
        digest.update(pixels.numpy().tobytes())
        out.append(digest.hexdigest()[:HASH_HEX])
    return out


def legacy_file_hashes(paths: Sequence[Path]) -> list[str]:
    """The unsalted SHA-256 prefix of each file, as adapters without a salt stored them (only to read those)."""
    out = []
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        out.append(digest.hexdigest()[:HASH_HEX])
    return out


def count_fitted(images: torch.Tensor, paths: Sequence[Path], fitted: Sequence[str], salt: str) -> int:
    """How many of these decoded ``images`` (read from ``paths``) an adapter with these hashes was fitted on."""
    known = set(fitted)
    if not known:
        return 0
    hashes = pixel_hashes(images, salt) if salt else legacy_file_hashes(paths)
    return sum(1 for h in hashes if h in known)
