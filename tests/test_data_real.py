"""Optional checks on real biomedical images from ../shared/real (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biomedvr_cli.data import decode_to_tensors, open_source, sample_few_shot


def _real(shared_dir: Path, name: str) -> Path:
    path = shared_dir / "real" / name
    if not path.exists():
        pytest.skip(f"real/{name} is not present")
    return path


def test_breastmnist_as_a_folder_tree(shared_dir: Path, tmp_path: Path) -> None:
    with np.load(_real(shared_dir, "breastmnist.npz"), allow_pickle=False) as data:
        images, labels = data["train_images"], data["train_labels"].reshape(-1)
    names = {0: "malignant", 1: "normal_or_benign"}
    for label, name in names.items():
        for i in np.flatnonzero(labels == label)[:12]:
            folder = tmp_path / "breast" / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
    source = open_source(tmp_path / "breast")
    assert source.classes == sorted(names.values())
    split = sample_few_shot(source.records, source.classes, 4, seed=0)
    batch = decode_to_tensors([r.path for r in split.train + split.val], 224)
    assert tuple(batch.images.shape) == (16, 3, 224, 224) and not batch.failures
    # Greyscale ultrasound stays grey after RGB conversion and upscaling.
    first = batch.images[0].int()
    assert (first[0] == first[1]).all() and (first[1] == first[2]).all()


def test_bccd_jpegs_decode(shared_dir: Path) -> None:
    folder = _real(shared_dir, "bccd/JPEGImages")
    paths = sorted(folder.glob("*.jpg"))[:4]
    if not paths:
        pytest.skip("no BCCD JPEGs")
    batch = decode_to_tensors(paths, 224, workers=2)
    assert tuple(batch.images.shape) == (len(paths), 3, 224, 224) and not batch.failures
    assert batch.images.float().std() > 5  # real content, not a blank frame
