"""`fit`, its Python twin and the adapter it writes under a hostile review (2026-12-07): each defect, fixed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.errors import InvalidInputError, UsageError
from tests.conftest import make_color_tree, write_color_attributes

runner = CliRunner()


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = make_color_tree(tmp_path / "colours", per_class=4, size=32)
    write_color_attributes(root / "attributes.json")
    return root


def fit(*args: object):
    return runner.invoke(app, ["fit", *map(str, args)])


def test_a_named_method_scores_the_same_way_from_python_as_from_the_command_line(tree: Path,
                                                                                tiny_backbone_spec: str) -> None:
    import warnings

    import biomedvr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = biomedvr.fit(tree, shots=1, backbone=tiny_backbone_spec, method="ar-fast", epochs=1)
    assert predictor.adapter.config.attributes.source == "class-name templates"


def test_csv_column_options_on_a_folder_are_refused_not_ignored(tree: Path, tiny_backbone_spec: str) -> None:
    import biomedvr

    for option in (["--group-column", "PatientID"], ["--split-column", "fold"], ["--label-column", "dx"]):
        result = fit(tree, "--shots", "1", "--backbone", tiny_backbone_spec, *option, "--out", tree.parent / "a.st")
        assert result.exit_code == 2 and "to a CSV manifest only" in result.stderr, result.stderr
    assert fit(tree, "--shots", "1", "--backbone", tiny_backbone_spec, "--epochs", "1", "--group-column", "none",
               "--out", tree.parent / "ok.safetensors").exit_code == 0
    with pytest.raises(UsageError, match="group column 'PatientID'"):
        biomedvr.fit(tree, shots=1, backbone=tiny_backbone_spec, group_column="PatientID")


def test_out_may_not_replace_the_backbone_s_weights(tree: Path, tiny_backbone_spec: str) -> None:
    weights = Path(tiny_backbone_spec.split(":", 1)[1])
    before = weights.stat().st_size
    result = fit(tree, "--shots", "1", "--backbone", tiny_backbone_spec, "--epochs", "1", "--out", weights, "--force")
    assert result.exit_code == 2 and "also an input" in result.stderr
    assert weights.stat().st_size == before


def test_batch_size_given_alone_applies_at_one_shot_too() -> None:
    from biomedvr_cli.method.recipes import load_recipe

    recipe = load_recipe("fast")
    assert recipe.batch_size_one_shot != 1
    changed = recipe.with_overrides(batch_size=1)
    assert changed.batch_size == changed.batch_size_one_shot == 1
    both = recipe.with_overrides(batch_size=8, batch_size_one_shot=2)
    assert (both.batch_size, both.batch_size_one_shot) == (8, 2)


def test_the_adapter_records_what_was_asked_and_used(tree: Path, tiny_backbone_spec: str) -> None:
    from biomedvr_cli.adapter import load_adapter

    out = tree.parent / "v0.safetensors"
    assert fit(tree, "--shots", "2", "--val-shots", "0", "--backbone", tiny_backbone_spec, "--epochs", "1",
               "--out", out).exit_code == 0
    config = load_adapter(out).config
    assert config.selection.split == "none" and config.training.val_shots == 0 and config.training.val_images == 0
    from biomedvr_cli.cli.commands.info import _held_out_row

    assert _held_out_row(config.validation) == ("held-out accuracy",
                                                "none: every labelled image was fitted (no validation split)")
    out = tree.parent / "few.safetensors"
    assert fit(tree, "--shots", "3", "--allow-fewer", "--backbone", tiny_backbone_spec, "--epochs", "1",
               "--out", out).exit_code == 0
    training = load_adapter(out).config.training
    assert (training.shots, training.val_shots) == (3, 3)  # as asked; the counts say what was used
    assert training.train_images + training.val_images == 4 * 3
    validation = load_adapter(out).config.validation
    assert _held_out_row(validation)[0] == ("cross-validated accuracy" if validation.kind == "cross-validation"
                                            else "validation accuracy")


def test_settings_that_cannot_act_are_refused(tree: Path, tiny_backbone_spec: str) -> None:
    import biomedvr

    cases = ((["--vr", "full", "--vr-frame", "20"], "--vr-frame"), (["--no-negative", "--gate", "sample"], "--gate"),
             (["--no-feature-head", "--head-clear-z", "3"], "--head-clear-z"),
             (["--no-confusion-loss", "--beta", "0.5"], "--beta"))
    for option, named in cases:
        result = fit(tree, "--shots", "1", "--backbone", tiny_backbone_spec, *option, "--out", tree.parent / "x.st")
        assert result.exit_code == 2 and f"{named} " in result.stderr and "change nothing" in result.stderr
    with pytest.raises(UsageError, match="gate= acts through the negative"):
        biomedvr.fit(tree, shots=1, backbone=tiny_backbone_spec, negative=False, gate="sample")


def test_a_class_mismatch_says_where_the_attributes_file_was_found(tree: Path, tiny_backbone_spec: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tree / "attributes.json").rename(tree.parent / "attributes.json")
    (tree / "alpha cell").rename(tree / "delta cell")
    monkeypatch.chdir(tree.parent.parent)
    result = fit(tree, "--shots", "1", "--backbone", tiny_backbone_spec, "--out", tree.parent / "x.safetensors")
    assert result.exit_code == 3 and "found beside the images folder" in result.stderr


def test_saving_a_fitted_predictor_never_replaces_what_the_fit_read(tree: Path, tiny_backbone_spec: str) -> None:
    import warnings

    import biomedvr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = biomedvr.fit(tree, shots=1, backbone=tiny_backbone_spec, epochs=1)
    before = (tree / "attributes.json").read_text()
    for target in (tree / "attributes.json", next(tree.rglob("*.png"))):
        with pytest.raises(UsageError, match="also an input"):
            predictor.save(target, force=True)
    assert (tree / "attributes.json").read_text() == before
    assert predictor.save(tree.parent / "mine.safetensors").is_file()


def test_seeds_have_one_range_in_python_and_on_the_command_line(tree: Path, tiny_backbone_spec: str) -> None:
    import biomedvr

    with pytest.raises(UsageError, match="at most 2\\*\\*32 - 1"):
        biomedvr.fit(tree, shots=1, backbone=tiny_backbone_spec, seed=2**40)
    assert fit(tree, "--shots", "1", "--seed", str(2**32), "--out", tree.parent / "s.st").exit_code == 2


def test_an_output_name_that_is_a_link_to_nothing_needs_force(tree: Path, tiny_backbone_spec: str) -> None:
    link = tree.parent / "dangling.safetensors"
    os.symlink(tree.parent / "nowhere" / "x", link)
    result = fit(tree, "--shots", "1", "--backbone", tiny_backbone_spec, "--epochs", "1", "--out", link)
    assert result.exit_code == 2 and "--force" in result.stderr and link.is_symlink()


def test_the_registry_s_own_ablation_settings_and_default_values_are_not_refused(tree: Path,
                                                                                tiny_backbone_spec: str) -> None:
    import numpy as np

    from biomedvr_cli.method.config import MethodConfig, unused_settings

    # Without the negative expert, turning its loss off too is what the registry's ablations do.
    off = MethodConfig(negative=False, confusion_loss=False)
    assert unused_settings(off, {"negative": False, "confusion_loss": False}) == []
    assert unused_settings(MethodConfig(), {"vr_frame": None}) == []  # the default value changes nothing
    # head_folds sets the outlier calibration's folds too: it acts without a feature head.
    assert unused_settings(MethodConfig(feature_head=False), {"feature_head": False, "head_folds": 3}) == []
    padding = MethodConfig(vr="padding")
    assert [u[0] for u in unused_settings(padding, {"vr": "padding", "vr_eps": 0.5})] == ["vr_eps"]
    assert MethodConfig(k=np.int64(3)).k == 3 and type(MethodConfig(k=np.int64(3)).k) is int
    result = fit(tree, "--shots", "1", "--backbone", tiny_backbone_spec, "--no-negative", "--no-confusion-loss",
                 "--epochs", "1", "--out", tree.parent / "abl.safetensors")
    assert result.exit_code == 0, result.stderr
    refused = fit(tree, "--shots", "1", "--backbone", tiny_backbone_spec, "--no-negative", "--gate", "sample",
                  "--out", tree.parent / "x.safetensors")
    assert refused.exit_code == 2 and "drop --no-negative" in refused.stderr


def test_one_image_a_class_stores_no_outlier_flag_and_says_why(tree: Path, tiny_backbone_spec: str) -> None:
    out = tree.parent / "one.safetensors"
    assert fit(tree, "--shots", "1", "--val-shots", "0", "--backbone", tiny_backbone_spec, "--epochs", "1",
               "--out", out).exit_code == 0
    config = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)["config"]
    assert "outliers" not in config["calibration"] and "one labelled image a class" in config["calibration"]["note"]
    result = runner.invoke(app, ["eval", str(tree), "--adapter", str(out), "--backbone", tiny_backbone_spec,
                                 "--outliers", str(next(tree.rglob("*.png")))])
    assert result.exit_code == 4 and "one labelled image a class" in result.stderr


def test_an_unknown_backbone_is_refused_before_the_images_are_read(tmp_path: Path) -> None:
    result = fit(tmp_path / "no-such-images", "--shots", "1", "--backbone", "nosuch", "--out", tmp_path / "a.st")
    assert result.exit_code == 2 and "unknown backbone 'nosuch'" in result.stderr


def test_the_selection_rule_says_the_last_epoch_is_checked_too(tree: Path, tiny_backbone_spec: str) -> None:
    result = fit(tree, "--shots", "2", "--backbone", tiny_backbone_spec, "--epochs", "1", "--json",
                 "--out", tree.parent / "e1.safetensors")
    assert result.exit_code == 0, result.stderr
    rule = json.loads(result.stdout)["selection_rule"]
    assert "evaluated every 5 epoch(s) and at the last planned epoch (1)" in rule
