"""Bad inputs, round 3 (issue 21): group 8 (the automatic attributes lookup) and group 12 (the Python API).

Group 8 rows run through the matrix harness of ``test_bad_inputs.py`` (exit code, one
``error: ... (fix: ...)`` line holding the row's words, no traceback, nothing left behind).
Group 12 calls the library the way a notebook does: every wrong argument must raise the
project's own error (a :class:`BiomedVRError` with a fix), never a raw ``AttributeError``
or ``TypeError``, and never after the work it was meant to prevent (scoring every image).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_bad_inputs import Env, Row, World, fit, world  # noqa: F401  (world: the fixture)
from tests.test_bad_inputs import test_bad_input as run_row

import biomedvr
from biomedvr_cli.errors import BiomedVRError, InvalidInputError, UsageError

# ----------------------------------------------------------------------------- group 8: attributes.json lookup


def _beside(env: Env, make: str) -> None:
    """A fresh tree in tmp/imgs and, beside it, ``attributes.json`` as a folder, FIFO or link."""
    env.tree()
    _make(env, env.tmp / "attributes.json", make)


def _inside(env: Env, make: str) -> None:
    _make(env, env.tree() / "attributes.json", make)


def _make(env: Env, path: Path, make: str) -> None:
    if make == "folder":
        path.mkdir()
    elif make == "fifo":
        env.fifo(str(path.relative_to(env.tmp)))
    elif make == "zero":
        path.symlink_to("/dev/zero")
    elif make == "dangling":
        path.symlink_to(env.tmp / "gone.json")


def _in_cwd(env: Env) -> None:
    """Images in tmp/sub/imgs (nothing beside them); a folder named attributes.json in the current folder."""
    from tests.conftest import make_color_tree

    make_color_tree(env.tmp / "sub" / "imgs", per_class=4)
    (env.tmp / "attributes.json").mkdir()
    env.monkeypatch.chdir(env.tmp)


_FIX = ("--attributes",)
ROWS = [
    Row("fit-attributes-json-is-a-folder-beside (#8)", lambda e: fit(e, e.tmp / "imgs"), 3,
        ("attributes.json beside the images folder is a folder", *_FIX), setup=lambda e: _beside(e, "folder")),
    Row("fit-attributes-json-is-a-fifo-beside (#8)", lambda e: fit(e, e.tmp / "imgs"), 3,
        ("attributes.json beside the images folder is not a regular file", *_FIX), setup=lambda e: _beside(e, "fifo")),
    Row("fit-attributes-json-links-to-dev-zero (#8)", lambda e: fit(e, e.tmp / "imgs"), 3,
        ("attributes.json beside the images folder is not a regular file", *_FIX), setup=lambda e: _beside(e, "zero")),
    Row("fit-attributes-json-links-to-nothing (#8)", lambda e: fit(e, e.tmp / "imgs"), 3,
        ("attributes.json beside the images folder is a link to nothing", *_FIX), setup=lambda e: _beside(e, "dangling")),
    Row("fit-attributes-json-is-a-folder-inside-the-images (#8)", lambda e: fit(e, e.tmp / "imgs"), 3,
        ("attributes.json inside the images folder is a folder", *_FIX), setup=lambda e: _inside(e, "folder")),
    Row("fit-attributes-json-is-a-fifo-inside-the-images (#8)", lambda e: fit(e, e.tmp / "imgs"), 3,
        ("attributes.json inside the images folder is not a regular file", *_FIX), setup=lambda e: _inside(e, "fifo")),
    Row("fit-attributes-json-is-a-folder-in-the-current-folder (#8)", lambda e: fit(e, e.tmp / "sub" / "imgs"), 3,
        ("attributes.json in the current folder is a folder", *_FIX), setup=_in_cwd),
    Row("fit-explicit-attributes-folder-still-refused (#8)",
        lambda e: fit(e, e.tmp / "imgs", "--attributes", e.tmp / "given.json"), 3, ("given.json is a folder",),
        setup=lambda e: (e.tree(), (e.tmp / "given.json").mkdir())),
]


@pytest.mark.parametrize("row", [pytest.param(r, id=r.name) for r in ROWS])
def test_attributes_lookup_row(row: Row, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    run_row(row, world, tmp_path, monkeypatch)


def test_no_class_folder_message_hides_the_attributes_json_folder(world: World, tmp_path: Path) -> None:  # noqa: F811
    """From Python too: the folder is named as what it is, not as "class folder 1 of 4"."""
    from tests.conftest import make_color_tree

    tree = make_color_tree(tmp_path / "imgs", per_class=4)
    (tree / "attributes.json").mkdir()
    with pytest.raises(InvalidInputError) as caught:
        biomedvr.fit(str(tree), shots=2, backbone=world.spec, epochs=1)
    assert "attributes.json inside the images folder is a folder" in caught.value.message
    assert "class folder" not in caught.value.one_line()


# ----------------------------------------------------------------------------- group 12: the Python API


@pytest.fixture(scope="module")
def predictor(world: World):  # noqa: F811
    return biomedvr.load(world.adapter, backbone=world.spec, device="cpu")


def _raises(kind: type[BiomedVRError], call: Any, *words: str) -> BiomedVRError:
    """``call()`` raises ``kind`` with a fix; its one line holds ``words``."""
    with pytest.raises(kind) as caught:
        call()
    error = caught.value
    assert error.hint, f"{error.message!r} has no fix"
    for word in words:
        assert word.lower() in error.one_line().lower(), error.one_line()
    return error


def test_fit_request_takes_a_string_path_and_refuses_wrong_types(world: World) -> None:  # noqa: F811
    from biomedvr_cli.pipeline.fit import FitRequest

    request = FitRequest(images=str(world.tree), shots=2, out=str(world.tree.parent / "x.safetensors"))
    assert request.images == world.tree and isinstance(request.out, Path)
    assert FitRequest(images=world.tree, shots=np.int64(2), out=None).out is None  # None: kept in memory
    _raises(UsageError, lambda: FitRequest(images=world.tree, shots="8", out=None), "shots", "whole number")
    _raises(UsageError, lambda: FitRequest(images=world.tree, shots=2.5, out=None), "shots", "whole number")
    _raises(UsageError, lambda: FitRequest(images=world.tree, shots=0, out=None), "shots", "at least 1")
    _raises(UsageError, lambda: FitRequest(images=None, shots=2, out=None), "images", "path")
    _raises(UsageError, lambda: FitRequest(images=world.tree, shots=2, out=5), "out", "path")
    _raises(UsageError, lambda: FitRequest(images=world.tree, shots=2, out=None, backbone=None), "backbone")
    _raises(UsageError, lambda: FitRequest(images=world.tree, shots=2, out=None, seed=-1), "seed")
    _raises(UsageError, lambda: FitRequest(images=world.tree, shots=2, out=None, force="no"), "force", "True or False")
    _raises(UsageError, lambda: FitRequest(images=world.tree, shots=2, out=None, method="paper"), "MethodConfig")


def test_fit_refuses_bad_pairs_and_options_before_loading_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    import biomedvr_cli.backbones.loader as loader

    monkeypatch.setattr(loader, "load_backbone", lambda *a, **k: pytest.fail("the backbone was loaded"))
    grey = np.zeros((8, 8), dtype=np.uint8)
    _raises(UsageError, lambda: biomedvr.fit([(grey, 0), (grey, 1)], shots=1), "label of images[0]", "class name")
    _raises(UsageError, lambda: biomedvr.fit([grey, grey], shots=1), "images[0] is not an (image, label) pair")
    _raises(InvalidInputError, lambda: biomedvr.fit([], shots=1), "empty")
    _raises(UsageError, lambda: biomedvr.fit([(torch.zeros(3, 8, 8), "a")], shots=1), "torch tensor", "permute")
    _raises(InvalidInputError, lambda: biomedvr.fit([(np.zeros((8, 8, 3)), "a")], shots=1), "colour", "uint8")
    _raises(InvalidInputError, lambda: biomedvr.fit([(np.zeros((3, 8, 8), np.uint8), "a")], shots=1), "transpose")
    _raises(UsageError, lambda: biomedvr.fit({"a": grey}, shots=1), "path")
    _raises(UsageError, lambda: biomedvr.fit("imgs", shots=1, frobnicate=1), "unknown option", "frobnicate")
    _raises(UsageError, lambda: biomedvr.fit("imgs", shots=1, vr="sideways"), "sideways")
    _raises(UsageError, lambda: biomedvr.fit("imgs", shots=1, offline="yes"), "offline", "True or False")
    _raises(UsageError, lambda: biomedvr.fit("imgs", shots=1, method="nope"), "unknown method", "biomedvr-paper")
    _raises(UsageError, lambda: biomedvr.fit("imgs", shots=1, method="biomedvr-paper", vr="full"),
            "vr='full' conflicts with method='biomedvr-paper'")
    _raises(UsageError, lambda: biomedvr.fit("imgs", shots=1, method="ar", attributes="a.json"), "class-name templates")
    _raises(UsageError, lambda: biomedvr.fit("imgs", shots=1, method=3), "method name or a MethodConfig")
    _raises(UsageError, lambda: biomedvr.load(None), "path")
    _raises(UsageError, lambda: biomedvr.load_backbone(None), "backbone name")


def test_evaluate_takes_a_string_adapter_and_checks_arguments_before_scoring(
        world: World, predictor, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from biomedvr_cli.pipeline import evaluate as module

    report = module.evaluate_adapter(str(world.tree), str(world.adapter), backbone=world.spec, device="cpu")
    assert report["adapter"] == world.adapter.name and report["metrics"]["images"] > 0
    monkeypatch.setattr(module, "compute_metrics", lambda *a, **k: pytest.fail("images were scored"))
    monkeypatch.setattr(module, "load_predictor", lambda *a, **k: pytest.fail("the adapter was loaded"))
    _raises(UsageError, lambda: module.evaluate_adapter(world.tree, 5), "adapter", "path")
    _raises(UsageError, lambda: module.evaluate_adapter(world.tree, None), "adapter", "path")
    _raises(UsageError, lambda: module.evaluate_adapter(None, world.adapter), "images")
    _raises(UsageError, lambda: module.evaluate_adapter(world.tree, world.adapter, split="testing"), "unknown split")
    _raises(UsageError, lambda: module.evaluate_adapter(world.tree, world.adapter, plots=3), "plots", "path")
    _raises(UsageError, lambda: module.evaluate_adapter(world.tree, None, predictor="p"), "Predictor")
    _raises(UsageError, lambda: biomedvr.evaluate(world.tree, str(world.adapter)), "Predictor", "biomedvr.load")


def test_classify_refuses_none_and_takes_one_image_alone(world: World, predictor) -> None:  # noqa: F811
    _raises(UsageError, lambda: predictor.classify(None), "no images")
    _raises(UsageError, lambda: predictor.classify({"a": 1}), "dict")
    _raises(UsageError, lambda: predictor.classify([torch.zeros(3, 32, 32, dtype=torch.uint8)]), "probabilities")
    _raises(InvalidInputError, lambda: predictor.classify([world.tree / "missing.png"]), "missing.png")
    (alone,) = predictor.classify(str(world.good))
    assert set(alone) == set(predictor.classes) and sum(alone.values()) == pytest.approx(1.0, abs=1e-5)
    assert predictor.classify([]) == []


def test_predict_files_takes_one_path_alone_never_its_characters(world: World, predictor, tmp_path: Path) -> None:  # noqa: F811
    from biomedvr_cli.pipeline.predict import predict_files

    (row,) = predict_files(predictor, str(world.good))
    assert row.path == world.good and row.error is None and row.top
    (missing,) = predict_files(predictor, str(tmp_path / "x.png"))
    assert missing.path.name == "x.png" and missing.error
    _raises(UsageError, lambda: predict_files(predictor, None), "list of image paths")
    _raises(UsageError, lambda: predict_files(predictor, [3]), "paths[0]")
    _raises(UsageError, lambda: predict_files(predictor, [world.good], top_k="3"), "--top-k", "whole number")
    _raises(UsageError, lambda: predict_files(None, [world.good]), "Predictor")


def test_probabilities_refuse_float_and_wrongly_sized_pixels(predictor) -> None:
    size = predictor.image_size
    good = torch.zeros(2, 3, size, size, dtype=torch.uint8)
    assert predictor.probabilities(good).shape == (2, len(predictor.classes))
    _raises(UsageError, lambda: predictor.probabilities(good.float() / 255), "uint8", "float32")
    _raises(UsageError, lambda: predictor.probabilities(torch.zeros(2, 3, size + 1, size + 1, dtype=torch.uint8)),
            "shape", f"S = {size}")
    _raises(UsageError, lambda: predictor.probabilities(good[0]), "shape")
    _raises(UsageError, lambda: predictor.probabilities(np.zeros((2, 3, size, size), np.uint8)), "torch tensor")
    _raises(UsageError, lambda: predictor.probabilities(good, batch_size=0), "batch_size")


def test_explain_takes_a_pil_image_and_refuses_indices_out_of_range(world: World, predictor) -> None:  # noqa: F811
    picture = Image.open(world.good)
    explanation = predictor.explain(picture, 0)
    assert explanation.sentences and all(explanation.sentences.values())
    by_name = predictor.explain(picture, predictor.classes[0])
    assert by_name.sentence_score == pytest.approx(explanation.sentence_score)
    for bad in (99, -1, 1.0, True, None):
        _raises(UsageError, lambda: predictor.explain(picture, bad), "class index")
    _raises(UsageError, lambda: predictor.explain(picture, "no such class"), "not one of the adapter's classes")
    _raises(UsageError, lambda: predictor.explain([picture, picture], 0), "list")
    _raises(UsageError, lambda: predictor.explain(torch.zeros(3, 8, 8, dtype=torch.uint8), 0), "shape")


def test_save_and_predict_sets_refuse_bad_arguments(predictor, tmp_path: Path) -> None:
    _raises(UsageError, lambda: predictor.save(None), "path")
    _raises(UsageError, lambda: predictor.save(tmp_path / "a.safetensors", force="yes"), "force")
    _raises(UsageError, lambda: predictor.predict_sets([np.zeros((8, 8), np.uint8)], level=1.5), "coverage level")
    _raises(UsageError, lambda: predictor.predict_sets(None), "no images")
    assert not os.listdir(tmp_path)
