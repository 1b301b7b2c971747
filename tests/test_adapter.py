"""The adapter file: round trip, atomic overwrite rules, validation of damaged files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from biomedvr_cli.adapter import FORMAT_VERSION, load_adapter, read_metadata, save_adapter
from biomedvr_cli.adapter.config import AdapterConfig, AdapterConfigWarning
from biomedvr_cli.errors import AdapterError, BackboneUnavailableError, OutputExistsError


def _config_dict() -> dict:
    return {
        "biomedvr_version": "0",
        "backbone": {"label": "sandbox", "fingerprint": "sha256:abc", "logit_scale": 50.0, "embed_dim": 8},
        "preprocessing": {"image_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "classes": ["a", "b"], "attributes": {"source": "file", "sentences": {}},
        "method": {}, "training": {"seed": 0, "shots": 1, "val_shots": 0, "train_images": 2, "val_images": 0,
                                   "recipe": {"name": "fast"}},
        "selection": {"rule": "last", "epoch": 3}, "validation": {"accuracy": None, "nll": None, "images": 0},
    }


def _config() -> AdapterConfig:
    return AdapterConfig.from_dict(_config_dict())


def _raw(path, config: dict, tensors=None) -> None:
    save_file(tensors or {"w": torch.zeros(1)}, str(path),
              metadata={"format": "biomedvr-adapter", "format_version": FORMAT_VERSION, "config": json.dumps(config)})


def test_config_round_trips_through_dict() -> None:
    config = _config()
    assert AdapterConfig.from_dict(config.to_dict()) == config
    assert config.backbone.logit_scale == 50.0 and config.selection.epoch == 3 and config.training.recipe == {"name": "fast"}


def test_unknown_keys_from_newer_versions_warn_and_load(tmp_path) -> None:
    data = _config_dict()
    data["future_section"] = {"x": 1}
    data["training"]["future_knob"] = 2
    path = tmp_path / "newer.safetensors"
    _raw(path, data)
    with pytest.warns(AdapterConfigWarning) as record:  # no match=: pytest re-emits warnings that do not match
        adapter = load_adapter(path)
    messages = [str(w.message) for w in record]
    assert any("future_section" in m for m in messages) and any("future_knob" in m for m in messages)
    assert adapter.config.training.shots == 1


def test_non_finite_tensors_are_refused(tmp_path) -> None:
    path = tmp_path / "nan.safetensors"
    _raw(path, _config_dict(), {"w": torch.tensor([0.0, float("nan")])})
    with pytest.raises(AdapterError, match="non-finite") as info:
        load_adapter(path)
    assert info.value.exit_code == 4


def test_round_trip_and_metadata(tmp_path) -> None:
    path = tmp_path / "a.safetensors"
    save_adapter(path, {"w": torch.arange(4.0)}, _config(), force=False)
    meta = read_metadata(path)
    assert meta["format"] == "biomedvr-adapter" and meta["format_version"] == FORMAT_VERSION
    adapter = load_adapter(path)
    assert torch.equal(adapter.tensors["w"], torch.arange(4.0))
    assert adapter.classes == ["a", "b"]
    assert str(tmp_path) not in path.read_bytes().decode("latin-1")


def test_refuses_overwrite_without_force(tmp_path) -> None:
    path = tmp_path / "a.safetensors"
    save_adapter(path, {"w": torch.zeros(1)}, _config(), force=False)
    with pytest.raises(OutputExistsError):
        save_adapter(path, {"w": torch.ones(1)}, _config(), force=False)
    save_adapter(path, {"w": torch.ones(1)}, _config(), force=True)
    assert load_adapter(path).tensors["w"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # no temp files left


def test_corrupt_and_foreign_files(tmp_path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(AdapterError):
        load_adapter(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(1)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(AdapterError, match="not a biomedvr adapter"):
        load_adapter(foreign)
    with pytest.raises(AdapterError, match="does not exist"):
        load_adapter(tmp_path / "missing.safetensors")


def test_future_major_version_refused(tmp_path) -> None:
    path = tmp_path / "v9.safetensors"
    save_file({"w": torch.zeros(1)}, str(path),
              metadata={"format": "biomedvr-adapter", "format_version": "9.0", "config": json.dumps(_config_dict())})
    with pytest.raises(AdapterError, match="format 9.0"):
        load_adapter(path)


def test_missing_config_keys(tmp_path) -> None:
    path = tmp_path / "partial.safetensors"
    config = _config_dict()
    del config["classes"]
    _raw(path, config)
    with pytest.raises(AdapterError, match="classes"):
        load_adapter(path)
    config = _config_dict()
    del config["backbone"]["fingerprint"]
    _raw(path, config)
    with pytest.raises(AdapterError, match="fingerprint"):
        load_adapter(path)


def test_backbone_mismatch_is_exit_4(tmp_path) -> None:
    path = tmp_path / "a.safetensors"
    save_adapter(path, {"w": torch.zeros(1)}, _config(), force=False)
    adapter = load_adapter(path)
    with pytest.raises(BackboneUnavailableError) as info:
        adapter.check_backbone("sha256:other", 32)
    assert info.value.exit_code == 4 and "sha256:abc" in info.value.message and "sha256:other" in info.value.message
    with pytest.raises(AdapterError):
        adapter.check_backbone("sha256:abc", 64)
    adapter.check_backbone("sha256:abc", 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    with pytest.raises(AdapterError, match="mean") as info:
        adapter.check_backbone("sha256:abc", 32, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28))
    assert info.value.exit_code == 4
    adapter.check_backbone("sha256:abc", 32, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), accept_preprocessing=True)


def test_written_files_get_normal_permissions(tmp_path) -> None:
    import os
    import stat

    path = tmp_path / "a.safetensors"
    save_adapter(path, {"w": torch.zeros(1)}, _config(), force=False)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_reserve_output_holds_the_file_and_leaves_nothing_behind(tmp_path) -> None:
    from biomedvr_cli.atomic import reserve_output

    out = tmp_path / "new" / "deeper" / "a.safetensors"
    with pytest.raises(RuntimeError):
        with reserve_output(out, force=False):
            assert (out.parent / ".a.safetensors.lock").is_file()
            with pytest.raises(OutputExistsError, match="another biomedvr run"):
                with reserve_output(out, force=True):
                    pass
            raise RuntimeError("the fit failed")
    assert not (tmp_path / "new").exists()  # folders it made are gone when nothing was written
    with reserve_output(out, force=False):
        save_adapter(out, {"w": torch.zeros(1)}, _config(), force=False)
    assert [p.name for p in out.parent.iterdir()] == ["a.safetensors"]  # the lock is gone, the output stays
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(Exception) as info:
        with reserve_output(blocked / "a.safetensors", force=False):
            pass
    assert getattr(info.value, "exit_code", None) == 2 and "cannot write" in str(info.value)
