"""``import biomedvr``: the notebook flow of docs/python-api.md, on the tiny random backbone.

A notebook user fits, predicts and saves in five lines, from a folder given as a string and
from images held in memory; the backbone is loaded once and reused; notices reach them
through ``logging`` and ``warnings`` without a callback; and no call changes global state
(torch, random and numpy generators, ``os.environ``).
"""

from __future__ import annotations

import ast
import logging
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import biomedvr
from biomedvr_cli.pipeline.notices import BiomedVRWarning
from tests.conftest import make_color_tree, write_color_attributes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_color_tree(tmp_path_factory.mktemp("api") / "images", per_class=5, splits=("train", "test"))
    write_color_attributes(root / "attributes.json")
    return root


@pytest.fixture(scope="module")
def backbone(tiny_backbone_spec: str):
    return biomedvr.load_backbone(tiny_backbone_spec, offline=True, device="cpu")


def _pairs(tree: Path, split: str) -> list[tuple[object, str]]:
    """(image, label) pairs as a notebook holds them: PIL images and uint8 arrays, mixed."""
    files = sorted((tree / split).rglob("*.png"))
    return [(Image.open(f) if i % 2 else np.asarray(Image.open(f)), f.parent.name) for i, f in enumerate(files)]


def _same(a: list[dict[str, float]], b: list[dict[str, float]], tol: float = 1e-6) -> bool:
    """Two classify() results agree: same classes per image, probabilities within ``tol``."""
    return len(a) == len(b) and all(x.keys() == y.keys() and all(abs(x[k] - y[k]) <= tol for k in x) for x, y in zip(a, b))


def test_notebook_flow_with_string_paths(tree: Path, tiny_backbone_spec: str, tmp_path: Path) -> None:
    scan = str(next((tree / "test" / "beta cell").glob("*.png")))
    # The five lines of docs/python-api.md, with the tiny backbone and one epoch.
    predictor = biomedvr.fit(str(tree), shots=2, backbone=tiny_backbone_spec, epochs=1, device="cpu")
    probs = predictor.classify([scan])
    predictor.save(str(tmp_path / "derm.safetensors"))
    again = biomedvr.load(str(tmp_path / "derm.safetensors"), backbone=tiny_backbone_spec, device="cpu")
    assert _same(again.classify([scan]), probs)

    assert predictor.classes == ["alpha cell", "beta cell", "gamma cell"]
    assert sum(probs[0].values()) == pytest.approx(1.0, abs=1e-5)
    result = predictor.fit_result
    assert result.attribute_source == "file" and result.train_images == 6
    assert result.out == tmp_path / "derm.safetensors"  # the file it was saved to, as `fit --json` names it
    with pytest.raises(biomedvr.OutputExistsError):  # nothing is overwritten without force
        predictor.save(tmp_path / "derm.safetensors")
    assert predictor.save(tmp_path / "derm.safetensors", force=True) == tmp_path / "derm.safetensors"
    report = biomedvr.evaluate(str(tree), again)
    assert report["split"] == "test split" and report["metrics"]["images"] == 15


def test_notebook_flow_with_images_in_memory(tree: Path, backbone, tmp_path: Path, monkeypatch) -> None:
    import biomedvr_cli.backbones.loader as loader

    monkeypatch.setattr(loader, "load_backbone", lambda *a, **k: pytest.fail("the backbone was loaded again"))
    train, test = _pairs(tree, "train"), _pairs(tree, "test")
    predictor = biomedvr.fit(train, shots=2, attributes=tree / "attributes.json", backbone=backbone, epochs=1,
                             out=tmp_path / "mem.safetensors")
    probs = predictor.classify([image for image, _ in test[:4]])
    sets = predictor.predict_sets([image for image, _ in test[:4]], level=0.8)
    loaded = biomedvr.load(tmp_path / "mem.safetensors", backbone=backbone)

    assert predictor.backbone is backbone and loaded.backbone is backbone
    assert _same(loaded.classify([image for image, _ in test[:4]]), probs)
    assert len(sets) == 4 and all(s and set(s) <= set(predictor.classes) for s in sets)
    assert predictor.fit_result.attribute_source == "file"
    report = biomedvr.evaluate(test, loaded)
    assert report["split"] == "all images" and report["metrics"]["images"] == len(test)
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0 and not report["warnings"]  # none of the test images was fitted


def test_in_memory_fit_is_the_same_fit_as_from_the_files(tree: Path, backbone) -> None:
    """Arrays are decoded by the file rules: a fit on the decoded train images equals the fit on the folder.

    The pairs are listed in the folder's order, so the seeded draw picks the same images.
    """
    files = sorted((tree / "train").rglob("*.png"))
    pairs = [(np.asarray(Image.open(f)), f.parent.name) for f in files]
    folder = biomedvr.fit(tree, shots=2, backbone=backbone, epochs=1, seed=3)
    memory = biomedvr.fit(pairs, shots=2, attributes=tree / "attributes.json", backbone=backbone, epochs=1, seed=3)
    scans = [np.asarray(Image.open(f)) for f in sorted((tree / "test").rglob("*.png"))[:3]]
    assert _same(memory.classify(scans), folder.classify(scans), 1e-5)


def test_fit_takes_a_registry_method_or_settings_one_by_one(tree: Path, backbone, monkeypatch) -> None:
    """``method="NAME"`` is ``fit --method NAME``: the registry fixes the settings and the recipe."""
    import biomedvr_cli.pipeline.fit as pipeline_fit
    from biomedvr_cli.method.registry import registry

    requests = []

    def capture(request, **kwargs):
        requests.append(request)
        raise biomedvr.TrainingError("stopped by the test", "none")

    monkeypatch.setattr(pipeline_fit, "fit_adapter", capture)
    for kwargs in ({"method": "biomedvr-paper"}, {"vr": "padding", "epochs": 3}, {"method": "attrvr-fast", "lr": 1.0}):
        with pytest.raises(biomedvr.TrainingError):
            biomedvr.fit(tree, shots=2, backbone=backbone, **kwargs)
    paper, custom, attrvr = requests
    assert paper.method == registry().methods["biomedvr-paper"].config and paper.recipe == "paper"
    assert custom.method.vr == "padding" and custom.recipe == "fast" and custom.recipe_overrides == {"epochs": 3}
    assert attrvr.method == registry().methods["attrvr-fast"].config and attrvr.recipe_overrides == {"lr": 1.0}


def test_no_global_state_changes_and_notices_reach_logging_and_warnings(tree: Path, backbone, tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    bare = make_color_tree(tmp_path / "work" / "bare", per_class=4)  # no attributes file anywhere near it
    torch.manual_seed(1234)
    random.seed(5)
    np.random.seed(6)
    before = (torch.initial_seed(), torch.get_rng_state().clone(), random.getstate(), np.random.get_state()[1].copy(),
              dict(os.environ))
    with caplog.at_level(logging.INFO, logger="biomedvr"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = biomedvr.fit(str(bare), shots=2, backbone=backbone, epochs=1)
        found = biomedvr.fit(str(tree), shots=2, backbone=backbone, epochs=1)
        fitted.classify(np.zeros((40, 40), dtype=np.uint8))
        biomedvr.evaluate(str(tree), found, split="train")
    after = (torch.initial_seed(), torch.get_rng_state(), random.getstate(), np.random.get_state()[1], dict(os.environ))
    assert before[0] == after[0] and torch.equal(before[1], after[1])
    assert before[2] == after[2] and np.array_equal(before[3], after[3]) and before[4] == after[4]

    mine = [w for w in caught if issubclass(w.category, BiomedVRWarning)]
    templates = [w for w in mine if "no attributes file" in str(w.message)]
    assert len(templates) == 1 and "class-name templates" in str(templates[0].message)
    assert all(w.filename == __file__ for w in mine), [w.filename for w in mine]  # the user's line, not ours
    assert any("were used to fit or select this adapter" in str(w.message) for w in mine)  # eval on the train split
    assert "using attributes from attributes.json inside the images folder" in caplog.text
    assert fitted.fit_result.attribute_source == "class-name templates"


def test_load_backbone_leaves_os_environ_as_it_was(tiny_backbone_spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loaders set variables as a side effect (open_clip sets TOKENIZERS_PARALLELISM when imported)."""
    import biomedvr_cli.backbones.loader as loader

    real = loader.load_backbone

    def noisy(*args, **kwargs):
        os.environ["BIOMEDVR_TEST_SIDE_EFFECT"] = "1"
        os.environ.pop("BIOMEDVR_TEST_REMOVED", None)
        return real(*args, **kwargs)

    monkeypatch.setattr(loader, "load_backbone", noisy)
    monkeypatch.setenv("BIOMEDVR_TEST_REMOVED", "kept")
    before = dict(os.environ)
    torch.manual_seed(77)
    state = torch.get_rng_state().clone()
    biomedvr.load_backbone(tiny_backbone_spec, device="cpu")
    assert dict(os.environ) == before
    assert torch.equal(torch.get_rng_state(), state)  # building the model drew random initial weights


def test_import_is_light_and_the_facade_sits_on_the_pipeline() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, biomedvr; print(sorted({'torch', 'typer', 'rich'} & set(sys.modules)))"
                          "; print(biomedvr.__version__)"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded, version = out.stdout.split("\n")[:2]
    assert loaded == "[]" and version == biomedvr.__version__
    import biomedvr_cli

    assert biomedvr.__version__ == biomedvr_cli.__version__
    for path in (ROOT / "biomedvr").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert not name.startswith(("biomedvr_cli.cli", "biomedvr_cli.benchmark", "typer", "rich")), (path, name)
    for name in biomedvr.__all__:
        assert getattr(biomedvr, name) is not None


def test_the_wheel_finds_both_packages() -> None:
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found = find_packages(str(ROOT), include=config["tool"]["setuptools"]["packages"]["find"]["include"])
    assert "biomedvr" in found and "biomedvr_cli" in found and "biomedvr_cli.pipeline" in found
    assert not any(p.startswith("tests") for p in found)
