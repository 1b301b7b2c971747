"""The content digest fit stores: an adapter changed after fit is refused, older ones still load."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from biomedvr_cli.adapter.file import CONTENT_KEY, content_digest, load_adapter
from biomedvr_cli.cli.app import app
from biomedvr_cli.errors import AdapterError

runner = CliRunner()


def _rewritten(adapter: Path, out: Path, edit: Callable[[dict, dict, dict], None]) -> Path:
    """A copy of ``adapter`` after ``edit(metadata, config, tensors)``; the stored digest is kept as it was."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(adapter), framework="pt") as handle:
        metadata = dict(handle.metadata())
    config, tensors = json.loads(metadata["config"]), load_file(str(adapter))
    edit(metadata, config, tensors)
    metadata["config"] = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    save_file(tensors, str(out), metadata=metadata)
    return out


def _swap_classes(metadata: dict, config: dict, tensors: dict) -> None:
    config["classes"][0], config["classes"][1] = config["classes"][1], config["classes"][0]


def _nudge_bias(metadata: dict, config: dict, tensors: dict) -> None:
    tensors["head_bias"] = tensors["head_bias"].clone()
    tensors["head_bias"][0] += 0.5


def _nothing(metadata: dict, config: dict, tensors: dict) -> None:
    return None


def test_fit_stores_a_digest_of_what_it_wrote(tiny_colour_adapter) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    _, adapter, _ = tiny_colour_adapter
    with safe_open(str(adapter), framework="pt") as handle:
        metadata = dict(handle.metadata())
    assert len(metadata[CONTENT_KEY]) == 64
    assert content_digest(metadata["config"], load_file(str(adapter))) == metadata[CONTENT_KEY]
    shown = runner.invoke(app, ["info", str(adapter)])
    assert shown.exit_code == 0 and "matches the file" in " ".join(shown.stderr.split())
    as_json = json.loads(runner.invoke(app, ["info", str(adapter), "--json"]).stdout)
    assert as_json[CONTENT_KEY] == metadata[CONTENT_KEY]


@pytest.mark.parametrize("edit", [_swap_classes, _nudge_bias], ids=["classes-swapped", "bias-changed"])
def test_a_plausible_edit_is_refused_by_predict_info_and_python(tiny_colour_adapter, tmp_path: Path, edit) -> None:
    root, adapter, spec = tiny_colour_adapter
    assert "head_bias" in load_adapter(adapter).tensors  # the edit below has something to change
    bad = _rewritten(adapter, tmp_path / "bad.safetensors", edit)
    image = next((root / "test" / "alpha cell").glob("*.png"))
    predicted = runner.invoke(app, ["predict", str(image), "--adapter", str(bad), "--backbone", spec])
    assert predicted.exit_code == 4 and "changed after fit" in predicted.stderr
    assert "Traceback" not in predicted.stderr and "refit the adapter" in predicted.stderr
    shown = runner.invoke(app, ["info", str(bad)])
    assert shown.exit_code == 4 and "changed after fit" in shown.stderr
    with pytest.raises(AdapterError, match="changed after fit"):
        load_adapter(bad)


def test_a_copy_rewritten_unchanged_still_loads(tiny_colour_adapter, tmp_path: Path) -> None:
    # The digest covers the config text as stored: the same canonical JSON re-written is the same adapter.
    _, adapter, _ = tiny_colour_adapter
    same = _rewritten(adapter, tmp_path / "same.safetensors", _nothing)
    assert load_adapter(same).classes == load_adapter(adapter).classes


def test_an_adapter_without_a_digest_loads_and_info_says_so(tiny_colour_adapter, tmp_path: Path) -> None:
    root, adapter, spec = tiny_colour_adapter
    older = _rewritten(adapter, tmp_path / "older.safetensors", lambda m, c, t: m.pop(CONTENT_KEY))
    image = next((root / "test" / "alpha cell").glob("*.png"))
    predicted = runner.invoke(app, ["predict", str(image), "--adapter", str(older), "--backbone", spec])
    assert predicted.exit_code == 0, predicted.stderr
    shown = runner.invoke(app, ["info", str(older)])
    assert shown.exit_code == 0 and "written before" in " ".join(shown.stderr.split())
    assert json.loads(runner.invoke(app, ["info", str(older), "--json"]).stdout)[CONTENT_KEY] is None


@pytest.mark.parametrize("value", ["abc", "G" * 64, "A" * 64, ""])
def test_a_digest_that_is_not_a_sha256_is_refused(tiny_colour_adapter, tmp_path: Path, value: str) -> None:
    _, adapter, _ = tiny_colour_adapter
    bad = _rewritten(adapter, tmp_path / "bad.safetensors", lambda m, c, t: m.__setitem__(CONTENT_KEY, value))
    with pytest.raises(AdapterError, match="not a sha256"):
        load_adapter(bad)


def test_a_saved_predictor_gets_a_fresh_digest(tiny_colour_adapter, tmp_path: Path) -> None:
    from biomedvr_cli.pipeline.predictor import load_predictor

    _, adapter, spec = tiny_colour_adapter
    predictor = load_predictor(adapter, backbone=spec)
    predictor.save(tmp_path / "again.safetensors")
    assert load_adapter(tmp_path / "again.safetensors").classes == predictor.classes


def test_the_digest_sees_dtype_shape_name_and_every_byte() -> None:
    base = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    reference = content_digest("{}", base)
    assert content_digest("{}", dict(reversed(base.items()))) == reference  # order of the dict is not content
    changed = [
        {**base, "a": base["a"].reshape(3, 2)},
        {**base, "a": base["a"].to(torch.float64)},
        {"c": base["a"], "b": base["b"]},
        {**base, "b": torch.tensor([1, 3], dtype=torch.int64)},
        {**base, "h": torch.zeros((), dtype=torch.float16)},
    ]
    assert all(content_digest("{}", tensors) != reference for tensors in changed)
    assert content_digest('{"x":1}', base) != reference
