"""Backbone specs, offline loading of local weights, freezing and fingerprints."""

from __future__ import annotations

import json

import pytest
import torch

from biomedvr_cli.backbones import load_backbone, parse_backbone
from biomedvr_cli.backbones.fingerprint import weights_fingerprint
from biomedvr_cli.errors import BackboneUnavailableError, UsageError


def test_parse_forms(tmp_path) -> None:
    assert parse_backbone("biomedclip").preset is not None
    assert parse_backbone("ViT-B-16:openai").kind == "tag"
    assert parse_backbone("hf-hub:org/repo").kind == "hf-hub"
    spec = parse_backbone(f"local-dir:{tmp_path}")
    assert spec.kind == "local-dir" and spec.label == "local-dir"
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    spec = parse_backbone(f"ViT-B-32:{weights}")
    assert spec.kind == "file" and str(tmp_path) not in spec.label
    with pytest.raises(UsageError):
        parse_backbone("nonsense")


def test_tag_offline_fails_with_hint() -> None:
    with pytest.raises(BackboneUnavailableError) as info:
        load_backbone("clip-vit-b32")
    assert "hf download timm/vit_base_patch32_clip_224.openai" in info.value.hint


def test_local_weights_load_frozen(tiny_backbone_spec: str) -> None:
    backbone = load_backbone(tiny_backbone_spec, device="cpu")
    assert backbone.image_size == 32
    assert all(not p.requires_grad for p in backbone.model.parameters())
    assert not backbone.model.training
    texts = backbone.encode_texts(["a red cell", "a blue cell", "a green cell"], batch_size=2)
    assert texts.shape == (3, 32)
    assert torch.allclose(texts.norm(dim=1), torch.ones(3), atol=1e-5)
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    feats = backbone.encode_images(images)
    feats.sum().backward()
    assert images.grad is not None  # VR training needs input gradients
    assert backbone.logit_scale == pytest.approx(float(backbone.model.logit_scale.exp()))


def test_fingerprint_stable_and_sensitive(tiny_backbone_spec: str) -> None:
    a = load_backbone(tiny_backbone_spec)
    b = load_backbone(tiny_backbone_spec)
    assert a.fingerprint == b.fingerprint
    with torch.no_grad():
        next(b.model.parameters()).mul_(2.0)
    assert weights_fingerprint(b.model) != a.fingerprint


def test_local_dir(tmp_path, tiny_backbone_spec: str) -> None:
    from tests.conftest import TINY_CONFIG

    weights = tiny_backbone_spec.split(":", 1)[1]
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG, "preprocess_cfg": {}}))
    (folder / "open_clip_model.safetensors").write_bytes(open(weights, "rb").read())
    backbone = load_backbone(f"local-dir:{folder}")
    assert backbone.fingerprint == load_backbone(tiny_backbone_spec).fingerprint


def test_local_dir_without_config_is_exit_4(tmp_path) -> None:
    with pytest.raises(BackboneUnavailableError):
        load_backbone(f"local-dir:{tmp_path}")


def test_missing_weights_file(tmp_path) -> None:
    with pytest.raises(BackboneUnavailableError):
        load_backbone(f"ViT-B-32:{tmp_path / 'missing.safetensors'}")
