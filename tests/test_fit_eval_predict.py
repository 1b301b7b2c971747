"""fit -> eval -> predict -> info through the CLI on a tiny random backbone, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from tests.conftest import make_color_tree, write_color_attributes

runner = CliRunner()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = make_color_tree(tmp_path_factory.mktemp("imgs") / "data", per_class=6, splits=("train", "test"))
    write_color_attributes(root / "attributes.json")
    return root


@pytest.fixture(scope="module")
def fitted(tree: Path, tiny_backbone_spec: str, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adapter") / "colour.safetensors"
    result = runner.invoke(app, ["fit", str(tree), "--shots", "3", "--backbone", tiny_backbone_spec, "--out", str(out),
                                 "--epochs", "2", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["attributes"] == "file" and summary["train_images"] == 9 and summary["val_images"] == 9
    # 9 validation images: no trained epoch could gain more than 9 net, so the VR stage is skipped and says why
    assert summary["vr"]["epochs_run"] == 0 and not summary["vr"]["ran"] and not summary["vr"]["kept"]
    assert summary["vr"]["skipped"].startswith("the untrained views get ")
    assert "using attributes from attributes.json inside the images folder" in result.stderr
    return out


def test_fit_writes_self_describing_adapter(fitted: Path, tiny_backbone_spec: str) -> None:
    result = runner.invoke(app, ["info", str(fitted), "--json"])
    assert result.exit_code == 0
    config = json.loads(result.stdout)["config"]
    assert config["classes"] == ["alpha cell", "beta cell", "gamma cell"]
    assert config["training"]["shots"] == 3 and config["training"]["seed"] == 0
    assert "validation" in config["selection"]["split"]
    assert config["attributes"]["hash"]
    raw = fitted.read_bytes().decode("latin-1")
    assert str(fitted.parent) not in raw and "/tmp" not in raw and tiny_backbone_spec.split(":", 1)[1] not in raw


def test_eval_json_and_plots(fitted: Path, tree: Path, tiny_backbone_spec: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(tree), "--adapter", str(fitted), "--backbone", tiny_backbone_spec,
                                 "--json", "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    metrics = report["metrics"]
    assert report["split"] == "test split" and metrics["images"] == 18
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auroc_ovr", "ece", "nll"):
        assert key in metrics
    assert len(metrics["confusion_matrix"]) == 3
    assert (tmp_path / "plots" / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 1000


def test_predict_csv_json_and_unreadable_file(fitted: Path, tree: Path, tiny_backbone_spec: str, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    good = next((tree / "test" / "alpha cell").glob("*.png"))
    result = runner.invoke(app, ["predict", str(good), str(bad), "--adapter", str(fitted), "--backbone", tiny_backbone_spec,
                                 "--format", "json", "--top-k", "3", "--explain"])
    assert result.exit_code == 3
    rows = json.loads(result.stdout)["predictions"]
    top = [t["probability"] for t in rows[0]["top"]]
    assert rows[0]["prediction"] == rows[0]["top"][0]["class"] and len(top) == 3
    assert top == sorted(top, reverse=True) and sum(top) == pytest.approx(1.0, abs=1e-5)
    explain = rows[0]["explain"]
    assert "descriptive" in explain["sentences"]
    score = explain["score"]
    assert score["total"] == pytest.approx(score["sentences"] + score["feature_head"], abs=1e-3)
    assert score["sentence_share"] == pytest.approx(
        abs(score["sentences"]) / (abs(score["sentences"]) + abs(score["feature_head"])), abs=1e-3)
    assert "error" in rows[1]
    out = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(tree / "test"), "--adapter", str(fitted), "--backbone", tiny_backbone_spec,
                                 "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("file,prediction,class_1,probability_1") and len(lines) == 19
    again = runner.invoke(app, ["predict", str(good), "--adapter", str(fitted), "--backbone", tiny_backbone_spec,
                                "--format", "csv", "--out", str(out)])
    assert again.exit_code == 2  # no overwrite without --force
    # --out takes its format from the suffix; a table is never silently written as JSON
    as_json = tmp_path / "preds.json"
    result = runner.invoke(app, ["predict", str(good), "--adapter", str(fitted), "--backbone", tiny_backbone_spec,
                                 "--out", str(as_json)])
    assert result.exit_code == 0 and json.loads(as_json.read_text())["predictions"][0]["file"].endswith(good.name)
    for extra in (["--format", "table"], []):
        result = runner.invoke(app, ["predict", str(good), "--adapter", str(fitted), "--backbone", tiny_backbone_spec,
                                     "--out", str(tmp_path / "preds.txt"), *extra])
        assert result.exit_code == 2 and "--format csv" in result.stderr
        assert not (tmp_path / "preds.txt").exists()


def test_max_pixels_option_refuses_larger_images(fitted: Path, tree: Path, tiny_backbone_spec: str) -> None:
    from PIL import Image

    from biomedvr_cli.data import DecodeOptions

    good = next((tree / "test" / "alpha cell").glob("*.png"))
    pixels = Image.open(good).size[0] * Image.open(good).size[1]
    base = ["predict", str(good), "--adapter", str(fitted), "--backbone", tiny_backbone_spec, "--format", "json"]
    refused = runner.invoke(app, [*base, "--max-pixels", str(pixels - 1)])
    assert refused.exit_code == 3
    (row,) = json.loads(refused.stdout)["predictions"]
    assert f"cap of {pixels - 1:,} pixels" in row["error"] and "--max-pixels" in row["error"]
    assert runner.invoke(app, [*base, "--max-pixels", str(pixels)]).exit_code == 0
    assert runner.invoke(app, [*base, "--max-pixels", "0"]).exit_code == 2
    # the option's default is the library's default
    from biomedvr_cli.cli.options import MaxPixelsOption

    assert MaxPixelsOption.default == DecodeOptions().max_pixels


def test_reloaded_adapter_predicts_identically(fitted: Path, tree: Path, tiny_backbone_spec: str) -> None:
    import torch

    from biomedvr_cli.data import decode_to_tensors
    from biomedvr_cli.pipeline.predictor import load_predictor

    paths = sorted((tree / "test" / "beta cell").glob("*.png"))
    a = load_predictor(fitted, backbone=tiny_backbone_spec, device="cpu")
    b = load_predictor(fitted, backbone=tiny_backbone_spec, device="cpu")
    images = decode_to_tensors(paths, a.image_size).images
    assert torch.equal(a.probabilities(images), b.probabilities(images))


def test_adapter_refused_on_another_backbone(fitted: Path, tree: Path, tmp_path: Path) -> None:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(123)
    other = open_clip.create_model("biomedvr-tiny-test", pretrained=None)
    weights = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(weights))
    result = runner.invoke(app, ["eval", str(tree), "--adapter", str(fitted), "--backbone", f"biomedvr-tiny-test:{weights}"])
    assert result.exit_code == 4
    assert "fingerprint" in result.stderr


def test_corrupt_adapter_is_exit_4(tree: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 10)
    result = runner.invoke(app, ["eval", str(tree), "--adapter", str(bad)])
    assert result.exit_code == 4


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "too_few", "mismatch", "refuse_overwrite"],
)
def test_bad_fit_inputs(case: str, tmp_path: Path, tiny_backbone_spec: str) -> None:
    images = tmp_path / "imgs"
    out = tmp_path / "out.safetensors"
    args = ["fit", str(images), "--shots", "2", "--backbone", tiny_backbone_spec, "--out", str(out), "--epochs", "1"]
    expected = 3
    if case == "empty":
        images.mkdir()
    elif case == "too_few":
        make_color_tree(images, per_class=2)
        args[3] = "4"
    elif case == "mismatch":
        make_color_tree(images, per_class=4)
        attrs = write_color_attributes(tmp_path / "attrs.json")
        data = json.loads(attrs.read_text())
        data["classes"]["delta cell"] = data["classes"].pop("gamma cell")
        attrs.write_text(json.dumps(data))
        args += ["--attributes", str(attrs)]
    elif case == "refuse_overwrite":
        make_color_tree(images, per_class=4)
        out.write_bytes(b"keep me")
        expected = 2
    result = runner.invoke(app, args)
    assert result.exit_code == expected, result.stderr
    assert "Traceback" not in result.stderr
    if case == "refuse_overwrite":
        assert out.read_bytes() == b"keep me"
    else:
        assert not out.exists()
    if case == "mismatch":
        assert "gamma cell" in result.stderr and "delta cell" in result.stderr


def test_eval_unknown_class_is_exit_3(fitted: Path, tmp_path: Path, tiny_backbone_spec: str) -> None:
    root = make_color_tree(tmp_path / "other", per_class=2)
    (root / "alpha cell").rename(root / "omega cell")
    result = runner.invoke(app, ["eval", str(root), "--adapter", str(fitted), "--backbone", tiny_backbone_spec])
    assert result.exit_code == 3 and "omega cell" in result.stderr


def test_interrupt_leaves_nothing(tmp_path: Path, tiny_backbone_spec: str, monkeypatch) -> None:
    import biomedvr_cli.pipeline.fit as fitting

    make_color_tree(tmp_path / "imgs", per_class=4)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fitting, "train_head", interrupted)
    out = tmp_path / "a.safetensors"
    result = runner.invoke(app, ["fit", str(tmp_path / "imgs"), "--shots", "2", "--backbone", tiny_backbone_spec,
                                 "--out", str(out)])
    assert result.exit_code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_nan_loss_exits_1_and_writes_nothing(tmp_path: Path, tiny_backbone_spec: str, monkeypatch) -> None:
    import torch

    import biomedvr_cli.method.training as training

    make_color_tree(tmp_path / "imgs", per_class=4)
    monkeypatch.setattr(training, "biomedvr_loss", lambda *a, **k: (torch.tensor(float("nan"), requires_grad=True), {}))
    out = tmp_path / "a.safetensors"
    # No validation images: the VR stage trains its schedule (with 2 a class it would be skipped,
    # as no epoch could be clearly better on so few).
    result = runner.invoke(app, ["fit", str(tmp_path / "imgs"), "--shots", "2", "--backbone", tiny_backbone_spec,
                                 "--out", str(out), "--val-shots", "0"])
    assert result.exit_code == 1
    assert "nothing was written" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_vr_frame_option_is_recorded(tmp_path: Path, tiny_backbone_spec: str) -> None:
    make_color_tree(tmp_path / "imgs", per_class=4)
    out = tmp_path / "a.safetensors"
    result = runner.invoke(app, ["fit", str(tmp_path / "imgs"), "--shots", "2", "--backbone", tiny_backbone_spec,
                                 "--out", str(out), "--vr", "padding", "--vr-frame", "3", "--epochs", "1",
                                 "--gate", "sample", "--combine", "subtract", "--head-test", "accuracy"])
    assert result.exit_code == 0, result.stderr
    info = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)["config"]["method"]
    assert (info["vr_frame"], info["gate"], info["combine"], info["head_test"]) == (3, "sample", "subtract", "accuracy")


def test_python_api_classify_takes_paths_and_pil_images(fitted: Path, tree: Path, tiny_backbone_spec: str) -> None:
    from PIL import Image

    from biomedvr_cli.pipeline.predict import predict_files
    from biomedvr_cli.pipeline.predictor import load_predictor

    predictor = load_predictor(fitted, backbone=tiny_backbone_spec, device="cpu")
    path = next((tree / "test" / "beta cell").glob("*.png"))
    by_path, by_image = predictor.classify([path, Image.open(path)])
    assert list(by_path) == predictor.classes and sum(by_path.values()) == pytest.approx(1.0, abs=1e-5)
    assert by_path == pytest.approx(by_image, abs=1e-6)
    (row,) = predict_files(predictor, [path], top_k=3)
    assert {c: p for c, p in row.top} == pytest.approx(by_path, abs=1e-6)


def test_eval_warns_when_it_scores_images_the_adapter_was_fitted_on(fitted: Path, tree: Path,
                                                                     tiny_backbone_spec: str) -> None:
    base = ["eval", str(tree), "--adapter", str(fitted), "--backbone", tiny_backbone_spec, "--json"]
    on_test = json.loads(runner.invoke(app, base).stdout)
    assert not any("used to fit" in w for w in on_test["warnings"])
    on_train = runner.invoke(app, [*base, "--split", "train"])
    assert on_train.exit_code == 0, on_train.stderr
    (warning,) = [w for w in json.loads(on_train.stdout)["warnings"] if "used to fit" in w]
    # 3 shots + 3 validation images of each of 3 classes were drawn from the 6 training images a class
    assert warning.startswith("18 of the 18 evaluated images")
    config = json.loads(runner.invoke(app, ["info", str(fitted), "--json"]).stdout)["config"]
    hashes = config["training"]["image_hashes"]
    assert len(hashes) == 18 and all(len(h) == 16 for h in hashes) and hashes == sorted(hashes)


def test_fit_looks_for_attributes_inside_then_beside_then_in_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    from biomedvr_cli.pipeline.fit_inputs import find_attributes

    images = tmp_path / "project" / "images"
    images.mkdir(parents=True)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert find_attributes(images, None) == (None, "")
    (cwd / "attributes.json").write_text("{}")
    assert find_attributes(images, None) == (Path("attributes.json").resolve().parent / "attributes.json",
                                             "in the current folder")
    (images.parent / "attributes.json").write_text("{}")
    assert find_attributes(images, None) == (images.parent / "attributes.json", "beside the images folder")
    (images / "attributes.json").write_text("{}")
    assert find_attributes(images, None) == (images / "attributes.json", "inside the images folder")
    explicit = tmp_path / "mine.json"
    assert find_attributes(images, explicit) == (explicit, "--attributes")
