"""Decoding many files once into uint8 tensors (biomedvr_cli.data.tensors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from biomedvr_cli.data import DecodeOptions, decode_to_tensors, resize_and_crop
from biomedvr_cli.errors import UsageError


def _noise(path: Path, size: tuple[int, int], seed: int) -> Path:
    data = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(data).save(path)
    return path


@pytest.mark.parametrize("size", [(64, 48), (48, 64), (33, 100), (32, 32), (20, 12)])
def test_resize_and_crop_matches_torchvision(size: tuple[int, int]) -> None:
    from torchvision import transforms

    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    reference = transforms.Compose(
        [transforms.Resize(32, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(32)]
    )(image)
    ours = resize_and_crop(image, 32)
    assert ours.size == (32, 32)
    assert (np.asarray(ours) == np.asarray(reference)).all()


def test_decode_to_tensors_keeps_good_files_and_reports_bad_ones(tmp_path: Path) -> None:
    good_a = _noise(tmp_path / "a.png", (50, 40), 0)
    good_b = _noise(tmp_path / "b.jpg", (30, 90), 1)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    big = _noise(tmp_path / "big.png", (200, 200), 2)
    paths = [good_a, empty, good_b, big]
    batch = decode_to_tensors(paths, 24, DecodeOptions(max_pixels=20_000))
    assert batch.images.dtype == torch.uint8
    assert tuple(batch.images.shape) == (2, 3, 24, 24)
    assert batch.kept == [0, 2]
    assert [(p.name, "empty" in why or "cap" in why) for p, why in batch.failures] == [
        ("empty.png", True),
        ("big.png", True),
    ]
    expected = np.asarray(resize_and_crop(Image.open(good_a).convert("RGB"), 24))
    assert (batch.images[0].permute(1, 2, 0).numpy() == expected).all()


def test_threaded_decoding_gives_the_same_result(tmp_path: Path) -> None:
    paths = [_noise(tmp_path / f"{i}.png", (40 + i, 30), i) for i in range(6)]
    seen: list[int] = []
    serial = decode_to_tensors(paths, 16)
    threaded = decode_to_tensors(paths, 16, workers=3, progress=seen.append)
    assert torch.equal(serial.images, threaded.images)
    assert threaded.kept == list(range(6)) and not threaded.failures
    assert seen == [1, 2, 3, 4, 5, 6]


def test_empty_input_and_bad_arguments(tmp_path: Path) -> None:
    batch = decode_to_tensors([], 8)
    assert tuple(batch.images.shape) == (0, 3, 8, 8) and batch.kept == [] and batch.failures == []
    with pytest.raises(UsageError):
        decode_to_tensors([], 0)
    with pytest.raises(UsageError):
        decode_to_tensors([], 8, workers=-1)
