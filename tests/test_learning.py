"""Learning really happens: on a sandbox task the fitted adapter beats attribute zero-shot.

Uses the shipped sandbox backbone (no downloads) and a small, fast, seeded setting.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app

WEIGHTS = Path(__file__).resolve().parents[1] / "biomedvr_cli" / "sandbox" / "model" / "sandbox.safetensors"
pytestmark = pytest.mark.skipif(not WEIGHTS.is_file(), reason="sandbox weights not built yet")
runner = CliRunner()


@pytest.fixture(scope="module")
def task_tree(tmp_path_factory) -> Path:
    from biomedvr_cli.sandbox.dataset import make_task_dataset
    from biomedvr_cli.sandbox.tasks import load_task

    out = tmp_path_factory.mktemp("learn") / "blood"
    make_task_dataset(out, load_task("blood-smear"), 12, 40, 0, "default", False)
    return out


def _zero_shot_accuracy(tree: Path) -> float:
    from biomedvr_cli.attributes import load_attributes
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.data import decode_to_tensors, open_source
    from biomedvr_cli.method.zero_shot import image_features, zero_shot_logits

    backbone = load_backbone("sandbox", device="cpu")
    source = open_source(tree)
    test = [r for r in source.records if r.split == "test"]
    batch = decode_to_tensors([r.path for r in test], backbone.image_size)
    labels = torch.tensor([source.classes.index(r.label) for r in test])
    sets = load_attributes(tree / "attributes.json").sentence_sets()
    logits = zero_shot_logits(backbone, image_features(backbone, batch.images), source.classes, sets)
    return float((logits.argmax(1) == labels).float().mean())


@pytest.mark.slow
def test_adapter_beats_attribute_zero_shot(task_tree: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "blood.safetensors"
    fit = runner.invoke(app, ["fit", str(task_tree), "--shots", "8", "--backbone", "sandbox", "--out", str(adapter),
                              "--seed", "0", "--device", "cpu", "--json"])
    assert fit.exit_code == 0, fit.stderr
    report = runner.invoke(app, ["eval", str(task_tree), "--adapter", str(adapter), "--json", "--device", "cpu"])
    assert report.exit_code == 0, report.stderr
    adapted = json.loads(report.stdout)["metrics"]["accuracy"]
    zero_shot = _zero_shot_accuracy(task_tree)
    assert adapted >= zero_shot + 0.10, (adapted, zero_shot)


def _test_images(tree: Path, backbone):
    from biomedvr_cli.data import decode_to_tensors, open_source

    source = open_source(tree)
    test = [r for r in source.records if r.split == "test"]
    return source.classes, decode_to_tensors([r.path for r in test], backbone.image_size).images


def test_untrained_default_head_is_the_attribute_zero_shot_scorer(task_tree: Path) -> None:
    """Training starts from zero-shot: signed negative weight 0, zero VR pattern, zero feature head."""
    from biomedvr_cli.attributes import load_attributes
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.method.build import build_head
    from biomedvr_cli.method.config import MethodConfig
    from biomedvr_cli.method.training import predict_logits
    from biomedvr_cli.method.zero_shot import image_features, zero_shot_logits

    backbone = load_backbone("sandbox", device="cpu")
    classes, images = _test_images(task_tree, backbone)
    sets = load_attributes(task_tree / "attributes.json").sentence_sets()
    head, used = build_head(backbone, classes, sets, MethodConfig(), seed=0)
    assert head.use_negative and "confusion" in used  # the negative expert is there, at weight 0
    start = predict_logits(head, backbone.encode_images, images, device=backbone.device)
    zero_shot = zero_shot_logits(backbone, image_features(backbone, images), classes, sets)
    assert torch.allclose(start, zero_shot, atol=1e-6, rtol=0), float((start - zero_shot).abs().max())
    assert torch.equal(start.argmax(1), zero_shot.argmax(1))


@pytest.mark.slow  # 13 s; the round trip of every VR form and gate is also checked in test_method.py
def test_fitted_head_and_head_loaded_from_the_file_give_the_same_logits(task_tree: Path, tmp_path: Path) -> None:
    """The adapter file holds the whole trained head, feature head included."""
    from biomedvr_cli.pipeline.fit import FitRequest, fit_adapter
    from biomedvr_cli.pipeline.predictor import load_predictor
    from biomedvr_cli.method.recipes import load_recipe
    from biomedvr_cli.method.training import predict_logits

    out = tmp_path / "round.safetensors"
    fitted = fit_adapter(FitRequest(images=task_tree, shots=8, out=out, backbone="sandbox", seed=1, device="cpu",
                                    recipe_overrides={"epochs": 5, "eval_every": 1}))
    assert load_recipe("fast").epochs > 5 and fitted.head is not None
    predictor = load_predictor(out, device="cpu")
    _, images = _test_images(task_tree, predictor.backbone)
    in_memory = predict_logits(fitted.head, predictor.backbone.encode_images, images, device=predictor.backbone.device)
    loaded = predict_logits(predictor.head, predictor.backbone.encode_images, images, device=predictor.backbone.device)
    assert torch.equal(in_memory, loaded)
    assert predictor.head.config.feature_head and predictor.head.config.combine == "signed"
    assert set(fitted.head.state_dict()) == set(predictor.head.state_dict())
