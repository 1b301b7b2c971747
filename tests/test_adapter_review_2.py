"""Edited adapters a hostile review of session 15 loaded: each is refused now (exit 4), by `info` too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from biomedvr_cli.backbones.specs import stored_label_problem
from biomedvr_cli.cli.app import app
from tests.conftest import edited_adapter

runner = CliRunner()


def _set(section: str, key: str, value: object) -> Callable[[dict, dict], None]:
    return lambda tensors, config: config[section].__setitem__(key, value)


EDITS: dict[str, tuple[Callable[[dict, dict], None], str]] = {
    "label-local-dir-path": (_set("backbone", "label", "local-dir:/srv/models/bb"), "never stores a backbone's path"),
    "label-weights-path": (_set("backbone", "label", "ViT-B-16:/etc/passwd"), "never stores a backbone's path"),
    "label-unknown": (_set("backbone", "label", "nosuchthing"), "is not a backbone name"),
    "label-hub-dots": (_set("backbone", "label", "hf-hub:../x"), "is not a hub backbone name"),
    "scale-negative": (lambda t, c: c["backbone"].__setitem__("logit_scale", -c["backbone"]["logit_scale"]),
                       "logit_scale"),
    "class-email": (lambda t, c: c.__setitem__("classes", ["john.doe@hospital.org", *c["classes"][1:]]),
                    "an e-mail address"),
    "class-long": (lambda t, c: c.__setitem__("classes", ["x" * 5000, *c["classes"][1:]]), "5,000 characters"),
    "sentence-record": (lambda t, c: c["attributes"]["sentences"]["descriptive"].__setitem__(0, "MRN 12345678 cell"),
                        "a descriptive sentence"),
    "salt-not-hex": (_set("training", "image_hash_salt", "zz"), "not hexadecimal"),
    "owner-bool": (lambda t, c: t.__setitem__("owner_descriptive", t["owner_descriptive"] > 0), "not whole numbers"),
    "bank-scaled": (lambda t, c: t.__setitem__("bank_descriptive", t["bank_descriptive"] * 1e6), "unit vectors"),
    "precision-negated": (lambda t, c: t.__setitem__("outlier_precision", -t["outlier_precision"]),
                          "positive definite"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_an_edited_adapter_is_refused_with_one_line(tiny_colour_adapter, tmp_path: Path, case: str) -> None:
    root, adapter, spec = tiny_colour_adapter
    edit, said = EDITS[case]
    bad = edited_adapter(adapter, tmp_path / "bad.safetensors", edit)
    image = next((root / "test" / "alpha cell").glob("*.png"))
    result = runner.invoke(app, ["predict", str(image), "--adapter", str(bad), "--backbone", spec])
    assert result.exit_code == 4, (case, result.stderr)
    assert said in result.stderr and "Traceback" not in result.stderr
    if case.startswith(("label", "class", "sentence", "salt", "scale")):  # config checks: `info` refuses as predict does
        assert runner.invoke(app, ["info", str(bad)]).exit_code == 4


def test_a_logit_scale_other_than_the_backbone_s_is_refused(tiny_colour_adapter, tmp_path: Path) -> None:
    root, adapter, spec = tiny_colour_adapter
    bad = edited_adapter(adapter, tmp_path / "b.safetensors",
                  lambda t, c: c["backbone"].__setitem__("logit_scale", c["backbone"]["logit_scale"] * 1.5))
    result = runner.invoke(app, ["predict", str(next((root / "test").rglob("*.png"))), "--adapter", str(bad),
                                 "--backbone", spec])
    assert result.exit_code == 4 and "is not its backbone's" in result.stderr


@pytest.mark.parametrize(("label", "ok"), [
    ("biomedclip", True), ("sandbox", True), ("local-dir", True), ("ViT-B-16:local-file", True),
    ("ViT-B-16:openai", True), ("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", True),
    ("local-dir:/x/y", False), ("ViT-B-16:/etc/passwd", False), ("ViT-B-16:w.safetensors", False),
    ("x/y:local-file", False), (":local-file", False), ("hf-hub:a/b/../c", False), ("nosuchthing", False)])
def test_stored_backbone_labels(label: str, ok: bool) -> None:
    assert (stored_label_problem(label) is None) is ok


def test_a_fitted_adapter_still_loads(tiny_colour_adapter) -> None:
    root, adapter, spec = tiny_colour_adapter
    result = runner.invoke(app, ["predict", str(next((root / "test").rglob("*.png"))), "--adapter", str(adapter),
                                 "--backbone", spec])
    assert result.exit_code == 0, result.stderr
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize(("edit", "said"), [
    (lambda t, c: c["method"].__setitem__("combine", "xyz"), "config.method is not one this biomedvr can run"),
    (lambda t, c: c["method"].__setitem__("k", 2.5), "config.method is not one this biomedvr can run"),
])
def test_info_refuses_a_method_predict_refuses(tiny_colour_adapter, tmp_path: Path, edit, said: str) -> None:
    root, adapter, spec = tiny_colour_adapter
    bad = edited_adapter(adapter, tmp_path / "m.safetensors", edit)
    for args in (["info", str(bad)], ["predict", str(next((root / "test").rglob("*.png"))), "--adapter", str(bad),
                                      "--backbone", spec]):
        result = runner.invoke(app, args)
        assert result.exit_code == 4 and said in result.stderr, (args[0], result.stderr)


def test_unknown_method_and_calibration_keys_are_named_and_ignored(tiny_colour_adapter, tmp_path: Path) -> None:
    root, adapter, spec = tiny_colour_adapter

    def edit(tensors: dict, config: dict) -> None:
        config["method"]["future_knob"] = 7
        for part in config["calibration"].values():
            if isinstance(part, dict):
                part["future_field"] = 1

    newer = edited_adapter(adapter, tmp_path / "n.safetensors", edit)
    result = runner.invoke(app, ["info", str(newer)])
    assert result.exit_code == 0, result.stderr
    assert "ignoring method key(s) future_knob" in result.stderr
    assert "future_field (written by a newer biomedvr?)" in result.stderr
