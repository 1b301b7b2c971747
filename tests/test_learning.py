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
    attrs = load_attributes(tree / "attributes.json")
    sets = {c: {"descriptive": list(a.descriptive), "distinctive": list(a.distinctive), "confusion": list(a.confusion)}
            for c, a in attrs.classes.items()}
    logits = zero_shot_logits(backbone, image_features(backbone, batch.images), source.classes, sets)
    return float((logits.argmax(1) == labels).float().mean())


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
