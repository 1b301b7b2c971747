"""Bad inputs, round 3 (issue 21, groups 2, 6 and the export cases of 7): tampered exported
backbones and tampered adapters.

Every row runs through the matrix's own harness (``tests/test_bad_inputs.py``): the exit code,
one ``error: ... (fix: ...)`` line holding the row's words, no traceback, and nothing new left
behind after a failure. The exported folder is the tiny random backbone written by
``biomedvr backbones export`` once for the module; each row edits its own copy.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from tests.test_bad_inputs import Env, Row, World, _edited_adapter, _raise, world  # noqa: F401 (world: fixture)
from tests.test_bad_inputs import test_bad_input as run_row

runner = CliRunner()
CONFIG, WEIGHTS, MANIFEST, SUMS = "open_clip_config.json", "open_clip_model.safetensors", "biomedvr-export.json", "SHA256SUMS"


# ----------------------------------------------------------------------------- shared inputs


@pytest.fixture(scope="module")
def xworld(world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The matrix's world plus an exported tiny backbone and adapters edited the ways issue 21 names."""
    root = tmp_path_factory.mktemp("exports")
    export = root / "exp"
    result = runner.invoke(app, ["backbones", "export", world.spec, str(export)])
    assert result.exit_code == 0, result.stderr
    edits: dict[str, Callable[[dict], None]] = {
        "duplicate-classes": lambda c: c["classes"].__setitem__(1, c["classes"][0]),
        "int-class": lambda c: c["classes"].__setitem__(1, 5),
        "null-class": lambda c: c["classes"].__setitem__(1, None),
        "escape-class": lambda c: c["classes"].__setitem__(1, "\x1b[2J\x1b[31mbeta cell"),
        "csi-class": lambda c: c["classes"].__setitem__(1, "beta\x9b31m cell"),
        "bidi-class": lambda c: c["classes"].__setitem__(1, "\u202ellec ateb"),
        "escape-task": lambda c: c["attributes"].__setitem__("task", "colours\x1b]0;owned\x07"),
        "embed-128": lambda c: c["backbone"].__setitem__("embed_dim", 128),
        "nan-logit-scale": lambda c: c["backbone"].__setitem__("logit_scale", float("nan")),
        "std-0": lambda c: c["preprocessing"].__setitem__("std", [0.0, 0.0, 0.0]),
        "str-image-size": lambda c: c["preprocessing"].__setitem__("image_size", "big"),
    }
    for name, edit in edits.items():
        world.variants[name] = _edited_adapter(world.adapter, root / f"{name}.safetensors", config=edit)
    world.variants["export"] = export
    return world


def _tensor_offset(path: Path, prefix: str) -> int:
    """Byte offset in a safetensors file of the first float32 value of the first tensor named ``prefix``*."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    name = next(k for k in sorted(header) if k.startswith(prefix) and header[k].get("dtype") == "F32")
    return 8 + size + header[name]["data_offsets"][0]


def _poke(path: Path, value: float, prefix: str = "visual.") -> None:
    """Overwrite one float32 weight in place, keeping the file's size and modification time."""
    before = path.stat()
    with path.open("r+b") as handle:
        handle.seek(_tensor_offset(path, prefix))
        handle.write(struct.pack("<f", value))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def _copy(env: Env) -> Path:
    """This row's own copy of the export, at tmp/exp."""
    return Path(shutil.copytree(env.w.variants["export"], env.tmp / "exp"))


def _manifest(env: Env, edit: Callable[[dict], Any]) -> None:
    folder = _copy(env)
    data = json.loads((folder / MANIFEST).read_text())
    edit(data)
    (folder / MANIFEST).write_text(json.dumps(data))


def _rehash(folder: Path) -> None:
    """What a careless (or hostile) editor does: record the edited files' new sizes and checksums."""
    data = json.loads((folder / MANIFEST).read_text())
    for name in data["files"]:
        raw = (folder / name).read_bytes()
        data["files"][name] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    (folder / MANIFEST).write_text(json.dumps(data))


def _edit_config(folder: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads((folder / CONFIG).read_text())
    edit(data)
    (folder / CONFIG).write_text(json.dumps(data, indent=2) + "\n")


def _nan_weight(env: Env, *, rehash: bool = False, manifest: bool = True) -> None:
    folder = _copy(env)
    _poke(folder / WEIGHTS, float("nan"))
    if rehash:
        _rehash(folder)
    if not manifest:
        (folder / MANIFEST).unlink()
        (folder / SUMS).unlink()


def _used_once_then_edited(env: Env) -> None:
    """Issue 21: after a folder had loaded once, a same-size edit went unnoticed."""
    folder = _copy(env)
    first = runner.invoke(app, [str(a) for a in _predict_args(env)])
    assert first.exit_code == 0, first.stderr
    _poke(folder / WEIGHTS, 50.0)


def _std_zero(env: Env, *, rehash: bool) -> None:
    folder = _copy(env)
    _edit_config(folder, lambda d: d["preprocess_cfg"].__setitem__("std", [0.0, 0.0, 0.0]))
    if rehash:
        _rehash(folder)
    else:
        (folder / MANIFEST).unlink()
        (folder / SUMS).unlink()


def _changed_mean(env: Env) -> None:
    folder = _copy(env)
    text = (folder / CONFIG).read_text()
    mean = json.loads(text)["preprocess_cfg"]["mean"][0]
    edited = text.replace(json.dumps(mean), json.dumps(mean).replace("0.4", "0.9"), 1)
    assert edited != text and len(edited) == len(text)  # same size: only the checksum can tell
    (folder / CONFIG).write_text(edited)


def _link_outside(env: Env) -> None:
    folder = _copy(env)
    (folder / CONFIG).unlink()
    os.symlink(env.w.variants["export"] / CONFIG, folder / CONFIG)  # identical bytes, but outside the folder


def _manifest_outside(env: Env) -> None:
    folder = _copy(env)
    kept = env.tmp / "elsewhere.json"
    shutil.move(folder / MANIFEST, kept)
    os.symlink(kept, folder / MANIFEST)  # the same manifest, but living outside the folder


def _nan_features(env: Env) -> None:
    """Weights that pass every load check but overflow: the model yields NaN features for every image."""
    import torch

    from biomedvr_cli.backbones.loader import Backbone

    env.monkeypatch.setattr(Backbone, "encode_images", lambda self, images: torch.full(
        (images.shape[0], self.embed_dim), float("nan"), requires_grad=images.requires_grad))


def _local(env: Env) -> str:
    return f"local-dir:{env.tmp / 'exp'}"


def _predict_args(env: Env, adapter: Path | None = None) -> list[Any]:
    return ["predict", env.w.good, "--adapter", adapter or env.w.adapter, "--backbone", _local(env), "--format", "json"]


def _export_args(env: Env, *extra: Any) -> list[Any]:
    return ["backbones", "export", _local(env), env.tmp / "out", *extra]


def _no_nan_output(env: Env, result: Any) -> None:
    assert "NaN" not in result.stdout and "nan" not in result.stdout.lower(), result.stdout


def _valid_json(env: Env, result: Any) -> None:
    rows = json.loads(result.stdout)["predictions"]  # strict JSON: a bare NaN would fail here
    assert rows and all("error" not in r for r in rows), rows


def _raw_stderr_is_clean(env: Env, result: Any) -> None:
    assert not any(ch in result.stderr for ch in ("\x1b", "\x9b", "\u202e", "\x07")), repr(result.stderr)


def _out_kept(env: Env, result: Any) -> None:
    assert (env.tmp / "out" / ".DS_Store").read_text() == "mine"


def _disk_full_save(env: Env) -> None:
    from safetensors import SafetensorError

    env.monkeypatch.setattr("safetensors.torch.save_file", _raise(SafetensorError("No space left on device (os error 28)")))


def _disk_full_manifest(env: Env) -> None:
    env.monkeypatch.setattr("biomedvr_cli.backbones.export._write_manifest",
                            _raise(OSError(errno.ENOSPC, "No space left on device")))


def _disk_full_code() -> int:
    from biomedvr_cli.errors import EXIT_INVALID_INPUT

    return EXIT_INVALID_INPUT  # README: operating-system errors while writing (disk full) are exit 3


TAMPERED = ("does not match its sha-256",)
M = ("biomedvr-export.json",)

ROWS: list[Row] = [
    # --- group 2: the exported folder is checked on every load, by content --------------------
    Row("export-fresh-copy-loads", lambda e: _predict_args(e), 0, setup=_copy, check=_valid_json),
    Row("export-nan-weight-same-size (#21.2)", lambda e: _predict_args(e), 4, (WEIGHTS, *TAMPERED),
        setup=_nan_weight, check=_no_nan_output),
    Row("export-used-once-then-weight-50 (#21.2)", lambda e: _predict_args(e), 4, (WEIGHTS, *TAMPERED),
        setup=_used_once_then_edited),
    Row("export-nan-weight-manifest-rehashed (#21.2)", lambda e: _predict_args(e), 4, (WEIGHTS, "non-finite", "nan"),
        setup=lambda e: _nan_weight(e, rehash=True), check=_no_nan_output),
    Row("export-nan-weight-no-manifest (#21.2)", lambda e: _predict_args(e), 4, (WEIGHTS, "non-finite"),
        setup=lambda e: _nan_weight(e, manifest=False), check=_no_nan_output),
    Row("export-changed-mean (#21.2)", lambda e: _predict_args(e), 4, (CONFIG, *TAMPERED), setup=_changed_mean),
    Row("export-zero-checksum (#21.2)", lambda e: _predict_args(e), 4, (WEIGHTS, *TAMPERED),
        setup=lambda e: _manifest(e, lambda d: d["files"][WEIGHTS].__setitem__("sha256", "0" * 64))),
    Row("export-checksum-not-hex (#21.2)", lambda e: _predict_args(e), 4, (*M, WEIGHTS, "64 lowercase hex"),
        setup=lambda e: _manifest(e, lambda d: d["files"][WEIGHTS].__setitem__("sha256", "zero"))),
    Row("export-format-version-99 (#21.2)", lambda e: _predict_args(e), 4, (*M, "format_version 99", "reads 1"),
        setup=lambda e: _manifest(e, lambda d: d.__setitem__("format_version", 99))),
    Row("export-format-version-string (#21.2)", lambda e: _predict_args(e), 4, (*M, "format_version 1"),
        setup=lambda e: _manifest(e, lambda d: d.__setitem__("format_version", "1"))),
    Row("export-entry-climbs-out (#21.2)", lambda e: _predict_args(e), 4, (*M, "../../../etc/passwd", "climbs out"),
        setup=lambda e: _manifest(e, lambda d: d["files"].__setitem__("../../../etc/passwd", {"bytes": 1, "sha256": "0" * 64}))),
    Row("export-entry-absolute (#21.2)", lambda e: _predict_args(e), 4, (*M, "/etc/passwd", "not a relative path"),
        setup=lambda e: _manifest(e, lambda d: d["files"].__setitem__("/etc/passwd", {"bytes": 1, "sha256": "0" * 64}))),
    Row("export-entry-links-outside (#21.2)", lambda e: _predict_args(e), 4, (*M, CONFIG, "outside the folder"),
        setup=_link_outside),
    Row("export-manifest-links-outside", lambda e: _predict_args(e), 4, (*M, "link to a file outside the folder"),
        setup=_manifest_outside),
    Row("export-unlisted-weights-file (#21.2)", lambda e: _predict_args(e), 4, ("model.safetensors", "not listed", *M),
        setup=lambda e: shutil.copyfile(_copy(e) / WEIGHTS, e.tmp / "exp" / "model.safetensors")),
    Row("export-manifest-removed (#21.2)", lambda e: _predict_args(e), 4, (SUMS, "no biomedvr-export.json"),
        setup=lambda e: (_copy(e) / MANIFEST).unlink()),
    Row("export-manifest-fifo (#21.2)", lambda e: _predict_args(e), 4, (*M, "not a regular file"),
        setup=lambda e: ((_copy(e) / MANIFEST).unlink(), os.mkfifo(e.tmp / "exp" / MANIFEST))),
    Row("export-truncated-copy", lambda e: _predict_args(e), 4, (WEIGHTS, "incomplete copy"),
        setup=lambda e: os.truncate(_copy(e) / WEIGHTS, 1000)),
    Row("export-local-dir-is-a-file (#21.11)", lambda e: ["predict", e.w.good, "--adapter", e.w.adapter, "--backbone",
                                                         f"local-dir:{e.text('f.txt', 'x')}"], 4, ("not a folder",)),
    # --- group 7: export manifests with wrong types, preprocessing std 0 ----------------------
    Row("export-files-a-list (#21.7)", lambda e: _predict_args(e), 4, (*M, '"files" object'),
        setup=lambda e: _manifest(e, lambda d: d.__setitem__("files", list(d["files"])))),
    Row("export-bytes-a-string (#21.7)", lambda e: _predict_args(e), 4, (*M, WEIGHTS, "whole number of bytes"),
        setup=lambda e: _manifest(e, lambda d: d["files"][WEIGHTS].__setitem__("bytes", "many"))),
    Row("export-bytes-true (#21.7)", lambda e: _predict_args(e), 4, (*M, WEIGHTS, "whole number of bytes"),
        setup=lambda e: _manifest(e, lambda d: d["files"][WEIGHTS].__setitem__("bytes", True))),
    Row("export-entry-a-string (#21.7)", lambda e: _predict_args(e), 4, (*M, CONFIG, "not an object"),
        setup=lambda e: _manifest(e, lambda d: d["files"].__setitem__(CONFIG, "fine"))),
    Row("export-std-0-no-manifest (#21.7)", lambda e: _predict_args(e), 4, (CONFIG, "std", "0 or less"),
        setup=lambda e: _std_zero(e, rehash=False)),
    Row("export-std-0-manifest-rehashed (#21.7)", lambda e: _predict_args(e), 4, (CONFIG, "std", "0 or less"),
        setup=lambda e: _std_zero(e, rehash=True)),
    # --- `backbones export` verifies its source and leaves nothing on failure -----------------
    Row("export-of-tampered-folder (#21.2)", lambda e: _export_args(e), 4, (WEIGHTS, *TAMPERED),
        setup=_nan_weight),
    Row("export-of-tampered-folder-force-keeps-old (#21.2)", lambda e: _export_args(e, "--force"), 4, TAMPERED,
        setup=lambda e: (_nan_weight(e), (e.tmp / "out").mkdir(), (e.tmp / "out" / ".DS_Store").write_text("mine")),
        check=_out_kept),  # file-manager litter only: --force may replace that folder (not one with the user's files)
    Row("export-disk-full-weights (#21.7)", lambda e: ["backbones", "export", e.w.spec, e.tmp / "out"], _disk_full_code(),
        ("cannot write out", "no space left"), setup=_disk_full_save),
    Row("export-disk-full-manifest (#21.7)", lambda e: ["backbones", "export", e.w.spec, e.tmp / "out"], _disk_full_code(),
        ("cannot write out", "no space left"), setup=_disk_full_manifest),
    # --- non-finite probabilities never reach output ---------------------------------------
    Row("predict-nan-probabilities (#21.2)", lambda e: [*_predict_args(e)[:4], "--backbone", e.w.spec, "--format", "json"],
        4, ("non-finite probabilities", "corrupt"), setup=_nan_features, check=_no_nan_output),
    Row("eval-nan-probabilities (#21.2)", lambda e: ["eval", e.w.tree, "--adapter", e.w.adapter, "--backbone", e.w.spec,
                                                     "--json"], 4, ("non-finite probabilities",),
        setup=_nan_features, check=_no_nan_output),
    # --- group 6: tampered adapters are refused at load, by info and predict alike ----------
    Row("predict-duplicate-class-names (#21.6)", lambda e: _ad_predict(e, "duplicate-classes"), 4,
        ("class 2 of 3", "repeats class 1")),
    Row("info-duplicate-class-names (#21.6)", lambda e: ["info", e.w.variants["duplicate-classes"]], 4, ("repeats class 1",)),
    Row("predict-int-class-name (#21.6)", lambda e: _ad_predict(e, "int-class"), 4, ("config.classes[1]", "not str")),
    Row("info-int-class-name (#21.6, #21.7)", lambda e: ["info", e.w.variants["int-class"]], 4,
        ("config.classes[1] is a number",)),
    Row("info-json-null-class-name (#21.6)", lambda e: ["info", e.w.variants["null-class"], "--json"], 4,
        ("config.classes[1] is null",)),
    Row("predict-embed-dim-differs (#21.6)", lambda e: _ad_predict(e, "embed-128"), 4, ("embed_dim is 128", "bank_")),
    Row("info-escape-in-class-name (#21.6)", lambda e: ["info", e.w.variants["escape-class"]], 4,
        ("class 2 of 3", "control character u+001b"), check=_raw_stderr_is_clean),
    Row("predict-escape-in-class-name (#21.6)", lambda e: _ad_predict(e, "escape-class"), 4, ("u+001b",),
        check=_raw_stderr_is_clean),
    Row("info-c1-csi-in-class-name (#21.6)", lambda e: ["info", e.w.variants["csi-class"]], 4, ("u+009b",),
        check=_raw_stderr_is_clean),
    Row("info-bidi-override-in-class-name (#21.6)", lambda e: ["info", e.w.variants["bidi-class"]], 4, ("u+202e",),
        check=_raw_stderr_is_clean),
    Row("info-escape-in-task (#21.6)", lambda e: ["info", e.w.variants["escape-task"]], 4,
        ("config.attributes.task", "u+001b"), check=_raw_stderr_is_clean),
    Row("info-json-nan-logit-scale (#21.6)", lambda e: ["info", e.w.variants["nan-logit-scale"], "--json"], 4,
        ("logit_scale is nan",), check=_no_nan_output),
    Row("predict-adapter-std-0 (#21.7)", lambda e: _ad_predict(e, "std-0"), 4, ("preprocessing.std", "above zero")),
    Row("info-image-size-string (#21.11)", lambda e: ["info", e.w.variants["str-image-size"]], 4,
        ("config.preprocessing.image_size is a string, not int",)),
]


def _ad_predict(env: Env, variant: str) -> list[Any]:
    return ["predict", env.w.good, "--adapter", env.w.variants[variant], "--backbone", env.w.spec, "--format", "json"]


@pytest.mark.parametrize("row", [pytest.param(r, id=r.name, marks=r.marks) for r in ROWS])
def test_bad_export_or_adapter(row: Row, xworld: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_row(row, xworld, tmp_path, monkeypatch)


def test_an_edit_keeping_size_and_time_is_caught_by_the_library(xworld: World, tmp_path: Path) -> None:
    """The loader hashes on every load: no cache keyed by size or time can let a same-size edit through."""
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.errors import BackboneUnavailableError

    folder = Path(shutil.copytree(xworld.variants["export"], tmp_path / "exp"))
    assert load_backbone(f"local-dir:{folder}").fingerprint  # loads once, as a used folder has
    _poke(folder / WEIGHTS, 50.0, prefix="transformer.")  # the text tower, this time
    with pytest.raises(BackboneUnavailableError, match="does not match its SHA-256") as info:
        load_backbone(f"local-dir:{folder}")
    assert info.value.exit_code == 4 and WEIGHTS in info.value.message


def test_rows_cover_each_case_of_the_issue() -> None:
    names = " ".join(r.name for r in ROWS)
    assert len({r.name for r in ROWS}) == len(ROWS)
    for case in ("nan-weight", "weight-50", "changed-mean", "zero-checksum", "format-version-99", "climbs-out",
                 "absolute", "of-tampered-folder", "files-a-list", "bytes-a-string", "entry-a-string", "std-0",
                 "disk-full", "nan-probabilities", "duplicate-class", "int-class", "embed-dim", "escape-in-class"):
        assert case in names, case


def test_classify_refuses_non_finite_probabilities(xworld: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python API's scoring path has the same gate as eval and predict: NaN is an error, never a result."""
    import numpy as np

    from biomedvr_cli.errors import BackboneUnavailableError
    from biomedvr_cli.pipeline.predictor import load_predictor

    predictor = load_predictor(xworld.adapter, backbone=xworld.spec, device="cpu")
    image = np.full((40, 40, 3), 128, dtype=np.uint8)
    assert sum(predictor.classify([image])[0].values()) == pytest.approx(1.0)  # the same call works before
    _nan_features(Env(Path("."), xworld, monkeypatch))
    with pytest.raises(BackboneUnavailableError, match="non-finite probabilities") as info:
        predictor.classify([image])
    assert info.value.exit_code == 4
