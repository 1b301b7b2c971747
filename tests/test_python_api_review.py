"""The Python API as a notebook uses it: what a hostile review of it found (session 15)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import pytest
import torch
from PIL import Image

import biomedvr
from biomedvr_cli.errors import InvalidInputError, UsageError
from biomedvr_cli.pipeline.fit import FitRequest
from biomedvr_cli.pipeline.notices import BiomedVRWarning
from biomedvr_cli.pipeline.predictor import predictor_for
from tests.conftest import make_color_tree, write_color_attributes


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_color_tree(tmp_path_factory.mktemp("api-review") / "images", per_class=5, splits=("train", "test"))
    write_color_attributes(root / "attributes.json")
    return root


@pytest.fixture(scope="module")
def backbone(tiny_backbone_spec: str):
    return biomedvr.load_backbone(tiny_backbone_spec, offline=True, device="cpu")


@pytest.fixture(scope="module")
def predictor(tree: Path, backbone):
    return biomedvr.fit(tree, shots=2, backbone=backbone, epochs=1)


def _train_files(tree: Path) -> list[Path]:
    return sorted((tree / "train").rglob("*.png"))


@pytest.mark.parametrize("mode", [pytest.param("no_grad", marks=pytest.mark.slow), "inference_mode"])
def test_fit_trains_vr_inside_a_no_gradient_block(tree: Path, backbone, mode: str) -> None:
    reports: list = []
    classes = ["alpha cell", "beta cell", "gamma cell"]
    # Labels unrelated to the colours: the untrained start gets validation images wrong, and with
    # clear_z=0 a trained epoch could be kept, so the VR stage runs and back-propagates.
    pairs = [(str(f), classes[i % 3]) for i, f in enumerate(_train_files(tree))]
    block = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with block:
        biomedvr.fit(pairs, shots=2, val_shots=3, backbone=backbone, epochs=1, clear_z=0.0, progress=reports.append,
                     attributes=tree / "attributes.json")
        assert not torch.is_grad_enabled()  # the caller's mode is as it was
    assert reports


def test_evaluate_plots_leave_the_matplotlib_backend_and_figures_alone(tree: Path, predictor, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    figure = plt.figure()
    biomedvr.evaluate(tree, predictor, plots=tmp_path / "plots")
    assert matplotlib.get_backend() == before
    assert plt.get_fignums() == [figure.number]
    assert (tmp_path / "plots" / "confusion_matrix.png").stat().st_size > 0
    plt.close(figure)


def test_patients_of_in_memory_images_are_kept_on_one_side(tree: Path, backbone) -> None:
    files = _train_files(tree)
    # Two images a patient: a draw that ignored the groups would split some of them between support and validation.
    triples = [(str(f), f.parent.name, f"{f.parent.name}-{i // 2}") for i, f in enumerate(files)]
    fitted = biomedvr.fit(triples, shots=1, val_shots=1, backbone=backbone, epochs=1, seed=4,
                          attributes=tree / "attributes.json")
    assert fitted.fit_result.train_images == 3 and fitted.fit_result.val_images == 3
    with pytest.raises(UsageError) as caught:
        biomedvr.fit([(str(f), f.parent.name) for f in files], shots=1, backbone=backbone, group_column="patient")
    assert "apply to a CSV manifest only" in caught.value.message and "triples" in caught.value.hint
    with pytest.raises(UsageError, match="patient id of images"):
        biomedvr.fit([(str(files[0]), "alpha cell", 1.5)], shots=1, backbone=backbone)


def test_the_draw_keeps_each_patient_of_a_triple_list_together(tree: Path) -> None:
    from biomedvr_cli.pipeline.fit_inputs import draw_readable
    from biomedvr_cli.pipeline.images import memory_images

    files = _train_files(tree)
    images = memory_images([(str(f), f.parent.name, f"P-{i // 2}") for i, f in enumerate(files)])
    for seed in range(5):
        split = draw_readable(images.source.records, images.source.classes, 1, seed=seed, val_shots=1,
                              allow_fewer=True, size=16, options=biomedvr.DecodeOptions() if hasattr(
                                  biomedvr, "DecodeOptions") else __import__("biomedvr_cli.data").data.DecodeOptions(),
                              decode=images.decode)
        assert not {r.group for r in split.train} & {r.group for r in split.val}


def test_a_float64_session_classifies_and_keeps_its_default(tree: Path, backbone, predictor) -> None:
    scan = str(next((tree / "test" / "alpha cell").glob("*.png")))
    expected = predictor.classify(scan)
    torch.set_default_dtype(torch.float64)
    try:
        loaded = predictor_for(predictor.adapter, backbone)
        assert loaded.classify(scan)[0] == pytest.approx(expected[0], abs=1e-5)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)


def test_warnings_made_errors_stop_a_fit_before_it_writes(tree: Path, backbone, tmp_path: Path) -> None:
    pairs = [(str(f), f.parent.name) for f in _train_files(tree)]
    out = tmp_path / "w.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("error", BiomedVRWarning)
        with pytest.raises(BiomedVRWarning, match="attributes"):
            biomedvr.fit(pairs, shots=2, backbone=backbone, epochs=1, out=out)  # no attributes: class-name templates
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_caution_points_at_the_callers_line(tree: Path, backbone) -> None:
    pairs = [(str(f), f.parent.name) for f in _train_files(tree)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        biomedvr.fit(pairs, shots=2, backbone=backbone, epochs=1)
    ours = [w for w in caught if issubclass(w.category, BiomedVRWarning)]
    assert ours and all(Path(w.filename).resolve() == Path(__file__).resolve() for w in ours)


def test_save_refuses_the_file_a_pil_image_was_opened_from(tree: Path, backbone) -> None:
    files = _train_files(tree)
    before = files[0].read_bytes()
    fitted = biomedvr.fit([(Image.open(f), f.parent.name) for f in files], shots=2, backbone=backbone, epochs=1,
                          attributes=tree / "attributes.json")
    with pytest.raises(UsageError, match="refused even with force=True"):
        fitted.save(files[0], force=True)
    assert files[0].read_bytes() == before


def test_reports_name_the_adapter_file_once_written(tree: Path, predictor, backbone, tmp_path: Path) -> None:
    path = predictor.save(tmp_path / "a.safetensors")
    assert predictor.path == path and predictor.fit_result.to_dict()["adapter"] == "a.safetensors"
    loaded = biomedvr.load(path, backbone=backbone)
    assert biomedvr.evaluate(tree, loaded)["adapter"] == "a.safetensors"


def test_evaluate_reports_coverage_and_outlier_auroc(tree: Path, predictor, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (i * 80, 255, 255 - i * 80)).save(other / f"o{i}.png")
    with pytest.warns(BiomedVRWarning, match="rests on 3 image"):  # too few for a firm AUROC: said so
        report = biomedvr.evaluate(tree, predictor, coverage=0.8, outliers=other)
    metrics = report["metrics"]
    assert 0.0 <= metrics["coverage"] <= 1.0 and metrics["mean_set_size"] >= 1.0 and "outlier_auroc" in metrics


def test_a_draw_short_of_images_names_why_they_were_unreadable(tree: Path, backbone) -> None:
    with pytest.raises(InvalidInputError) as caught:
        biomedvr.fit(tree, shots=2, backbone=backbone, epochs=1, max_pixels=10)
    assert "larger than the cap of 10 pixels" in caught.value.message and "--max-pixels" in caught.value.hint


def test_evaluate_does_not_leak_scikit_learn_warnings(tree: Path, predictor) -> None:
    one_class = [(str(f), "alpha cell") for f in sorted((tree / "test" / "alpha cell").glob("*.png"))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        biomedvr.evaluate(one_class, predictor)
    assert not [(w.filename, str(w.message)) for w in caught if "sklearn" in w.filename]


def test_a_backbone_prints_on_one_line(backbone) -> None:
    text = repr(backbone)
    assert "\n" not in text and text.startswith("Backbone(") and len(text) < 200


def test_device_hints_name_a_device_that_loads(tree: Path, backbone) -> None:
    with pytest.raises(UsageError) as caught:
        biomedvr.fit(tree, shots=2, backbone=backbone, device="cuda:0")
    assert "device='cuda')" in caught.value.hint
    with pytest.raises(UsageError, match="unknown device 'gpu'"):
        biomedvr.fit(tree, shots=2, backbone=backbone, device="gpu")


@pytest.mark.parametrize(("keywords", "message"), [
    ({"allow_download": "no"}, "allow_download must be True or False"),
    ({"recipe_overrides": {"epoch": 1}}, "unknown recipe setting"),
    ({"recipe_overrides": {"epochs": "x"}}, "epochs must be a whole number"),
])
def test_the_fit_request_checks_its_fields_when_made(tree: Path, keywords: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        FitRequest(images=tree, shots=2, out=None, **keywords)


def test_predictor_for_refuses_a_path_with_the_way_to_load_it(backbone, tree: Path) -> None:
    with pytest.raises(UsageError, match="adapter must be a loaded Adapter"):
        predictor_for("a.safetensors", backbone)
