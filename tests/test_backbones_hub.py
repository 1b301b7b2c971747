"""A BiomedCLIP-shaped model through the Hugging Face cache (``hf-hub:``) and through an exported
``local-dir`` folder, with no network and, for the exported folder, an empty cache.

The cache is laid out as ``hf download`` leaves it (blobs, snapshot symlinks, refs/main) for
the two real repos, with a tiny timm ViT and a one-layer BERT with a WordPiece vocab.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from biomedvr_cli.backbones import load_backbone
from biomedvr_cli.cli.app import app
from biomedvr_cli.errors import BackboneUnavailableError
from tests.conftest import BIOMEDBERT_REPO, BIOMEDCLIP_REPO, make_color_tree, use_hf_home, write_color_attributes

runner = CliRunner()
SENTENCES = ["a red cell", "a green cell filling the whole field"]


def _export(folder: Path) -> dict:
    result = runner.invoke(app, ["backbones", "export", "biomedclip", str(folder), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_hf_hub_backbone_loads_from_the_cache(biomedclip_hf_home: Path) -> None:
    backbone = load_backbone("biomedclip", device="cpu")
    assert backbone.image_size == 160
    assert backbone.logit_scale == pytest.approx(60.0, rel=1e-4)  # read from the model, not CLIP's 100
    assert backbone.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert backbone.tokenizer(SENTENCES).shape == (2, 32)  # the BERT tokenizer with the config's context length
    assert backbone.encode_texts(SENTENCES).shape == (2, 16)
    assert backbone.model_cfg["text_cfg"]["hf_model_name"] == BIOMEDBERT_REPO
    listed = runner.invoke(app, ["backbones", "--json"])
    row = next(r for r in json.loads(listed.stdout)["backbones"] if r["name"] == "biomedclip")
    assert row["available"] is True


def test_export_is_self_contained(biomedclip_hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = load_backbone("biomedclip", device="cpu")
    folder = tmp_path / "biomedclip-offline"
    summary = _export(folder)
    assert summary["fingerprint"] == source.fingerprint
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert names == {"open_clip_config.json", "open_clip_model.safetensors", "text/config.json", "text/vocab.txt",
                     "text/tokenizer_config.json", "biomedvr-export.json", "SHA256SUMS"}
    text_cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
    assert text_cfg["hf_model_name"] == "./text" and text_cfg["hf_tokenizer_name"] == "./text"
    assert not [p for p in folder.rglob("*") if p.is_symlink()]
    for line in (folder / "SHA256SUMS").read_text().splitlines():  # what `sha256sum -c SHA256SUMS` checks
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert not list(tmp_path.glob(".*partial*"))

    use_hf_home(monkeypatch, tmp_path / "empty-home")  # an empty cache, offline
    monkeypatch.chdir(tmp_path / "..")  # ./text is resolved against the folder, not the current directory
    offline = load_backbone(f"local-dir:{folder}", device="cpu", allow_download=False)
    assert offline.fingerprint == source.fingerprint
    assert torch.allclose(offline.encode_texts(SENTENCES), source.encode_texts(SENTENCES), atol=1e-6)
    images = torch.rand(2, 3, 160, 160)
    assert torch.allclose(offline.encode_images(images), source.encode_images(images), atol=1e-6)
    assert offline.logit_scale == pytest.approx(source.logit_scale) and offline.mean == source.mean


def test_copied_repo_folder_needs_its_text_tower(tiny_biomedclip_home: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug 1: the model repo folder alone is not enough offline; the error says how to export one that is."""
    repo = tiny_biomedclip_home / "hub" / ("models--" + BIOMEDCLIP_REPO.replace("/", "--"))
    folder = tmp_path / "copied"
    shutil.copytree(next((repo / "snapshots").iterdir()), folder)  # what `cp -rL` of a snapshot gives
    use_hf_home(monkeypatch, tmp_path / "empty-home")
    result = runner.invoke(app, ["backbones", "export", f"local-dir:{folder}", str(tmp_path / "out")])
    assert result.exit_code == 4
    assert f"hf download {BIOMEDBERT_REPO}" in result.stderr and "biomedvr backbones export" in result.stderr
    use_hf_home(monkeypatch, tiny_biomedclip_home)  # with BiomedBERT cached it loads, and exports
    assert load_backbone(f"local-dir:{folder}").image_size == 160
    result = runner.invoke(app, ["backbones", "export", f"local-dir:{folder}", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    use_hf_home(monkeypatch, tmp_path / "empty-again")
    assert load_backbone(f"local-dir:{tmp_path / 'out'}").image_size == 160


def test_export_refuses_an_existing_folder_and_a_damaged_copy_is_exit_4(biomedclip_hf_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["backbones", "export", "biomedclip", str(folder)])
    assert result.exit_code == 2 and "--force" in result.stderr
    assert (folder / "keep.txt").read_text() == "mine"
    result = runner.invoke(app, ["backbones", "export", "biomedclip", str(folder), "--force"])
    assert result.exit_code == 2 and "--force replaces only an earlier export" in result.stderr
    assert (folder / "keep.txt").read_text() == "mine"  # the user's own files are never deleted with the folder
    (folder / "keep.txt").unlink()
    (folder / ".DS_Store").write_text("finder")  # hidden files alone: nothing of the user's to lose
    result = runner.invoke(app, ["backbones", "export", "biomedclip", str(folder), "--force"])
    assert result.exit_code == 0, result.stderr
    assert "local-dir:" in result.stderr and not (folder / ".DS_Store").exists()
    result = runner.invoke(app, ["backbones", "export", "biomedclip", str(folder), "--force"])
    assert result.exit_code == 0, result.stderr  # an earlier export is replaced
    (folder / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["backbones", "export", "biomedclip", str(folder), "--force"])
    assert result.exit_code == 2 and "also holds 1 entries the export did not write" in result.stderr
    assert (folder / "notes.txt").read_text() == "mine"
    (folder / "notes.txt").unlink()
    (folder / ".git").mkdir()  # a hidden folder is the user's too
    (folder / ".git" / "HEAD").write_text("ref")
    result = runner.invoke(app, ["backbones", "export", "biomedclip", str(folder), "--force"])
    assert result.exit_code == 2 and (folder / ".git" / "HEAD").read_text() == "ref"
    other = tmp_path / "repo"
    (other / ".secret").mkdir(parents=True)
    (other / ".secret" / "key").write_text("k")
    result = runner.invoke(app, ["backbones", "export", "biomedclip", str(other), "--force"])
    assert result.exit_code == 2 and "is not one" in result.stderr and (other / ".secret" / "key").exists()
    shutil.rmtree(folder / ".git")
    weights = folder / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # an interrupted copy
    with pytest.raises(BackboneUnavailableError, match="incomplete copy") as info:
        load_backbone(f"local-dir:{folder}")
    assert info.value.exit_code == 4 and "sha256sum -c SHA256SUMS" in info.value.hint


def test_fit_eval_predict_through_hf_hub_then_exported_folder(biomedclip_hf_home: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    tree = make_color_tree(tmp_path / "data", per_class=4, size=48, splits=("train", "test"))
    write_color_attributes(tree / "attributes.json")
    adapter = tmp_path / "derm.safetensors"
    fit = runner.invoke(app, ["fit", str(tree), "--shots", "2", "--val-shots", "1", "--epochs", "1", "--out", str(adapter),
                              "--device", "cpu", "--json"])
    assert fit.exit_code == 0, fit.stderr
    summary = json.loads(fit.stdout)
    assert summary["backbone"] == "biomedclip" and summary["attributes"] == "file"
    evaluated = runner.invoke(app, ["eval", str(tree), "--adapter", str(adapter), "--device", "cpu", "--json"])
    assert evaluated.exit_code == 0, evaluated.stderr
    image = next((tree / "test" / "alpha cell").iterdir())
    hub = runner.invoke(app, ["predict", str(image), "--adapter", str(adapter), "--format", "json", "--device", "cpu"])
    assert hub.exit_code == 0, hub.stderr

    folder = tmp_path / "biomedclip-offline"
    _export(folder)
    use_hf_home(monkeypatch, tmp_path / "empty-home")
    local = runner.invoke(app, ["predict", str(image), "--adapter", str(adapter), "--backbone", f"local-dir:{folder}",
                                "--format", "json", "--device", "cpu"])
    assert local.exit_code == 0, local.stderr
    assert json.loads(local.stdout)["predictions"] == json.loads(hub.stdout)["predictions"]
    without = runner.invoke(app, ["predict", str(image), "--adapter", str(adapter), "--device", "cpu"])
    assert without.exit_code == 4 and "downloads are off (HF_HUB_OFFLINE=1 is set)" in without.stderr


def test_benchmark_coop_through_hf_hub(biomedclip_hf_home: Path, tmp_path: Path) -> None:
    tree = make_color_tree(tmp_path / "colours", per_class=3, size=32, splits=("train", "test"))
    write_color_attributes(tree / "attributes.json")
    result = runner.invoke(app, ["benchmark", str(tree), "--backbone", "biomedclip", "--methods", "coop", "--shots", "1",
                                 "--seeds", "1", "--epochs", "1", "--val-shots", "1", "--out", str(tmp_path / "out"),
                                 "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.stderr
    coop = next(j for j in json.loads(result.stdout)["jobs"] if j["method"] == "coop")
    cm = coop["confusion_matrix"]
    assert coop["metrics"]["accuracy"] == pytest.approx(sum(cm[i][i] for i in range(len(cm))) / sum(map(sum, cm)))


@pytest.mark.slow  # a fresh interpreter: 5-10 s here; the in-process test above covers the same route
def test_exported_folder_predicts_in_a_fresh_process_with_an_empty_cache(biomedclip_hf_home: Path, tmp_path: Path) -> None:
    """The issue's goal, as a user runs it: another process, HF_HOME empty, HF_HUB_OFFLINE=1."""
    tree = make_color_tree(tmp_path / "data", per_class=3, size=32)
    write_color_attributes(tree / "attributes.json")
    adapter = tmp_path / "a.safetensors"
    fit = runner.invoke(app, ["fit", str(tree), "--shots", "1", "--val-shots", "0", "--epochs", "1", "--out", str(adapter),
                              "--device", "cpu"])
    assert fit.exit_code == 0, fit.stderr
    folder = tmp_path / "exported"
    _export(folder)
    env = {**os.environ, "HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_CACHE", None)
    image = next((tree / "beta cell").iterdir())
    out = subprocess.run([sys.executable, "-m", "biomedvr_cli", "predict", str(image), "--adapter", str(adapter),
                          "--backbone", f"local-dir:{folder}", "--format", "csv", "--device", "cpu"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("file,prediction") and "Traceback" not in out.stderr
    assert not (tmp_path / "empty" / "hub").exists() or not any((tmp_path / "empty" / "hub").iterdir())


def test_a_local_dir_without_a_manifest_loads_with_a_notice_and_an_export_without_one(
        tiny_biomedclip_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder assembled by hand is allowed, but nothing checks its files: the load says so."""
    from biomedvr_cli.backbones.downloads import DownloadReporter

    repo = tiny_biomedclip_home / "hub" / ("models--" + BIOMEDCLIP_REPO.replace("/", "--"))
    folder = tmp_path / "handmade"
    shutil.copytree(next((repo / "snapshots").iterdir()), folder)
    use_hf_home(monkeypatch, tiny_biomedclip_home)
    notices: list[str] = []
    load_backbone(f"local-dir:{folder}", reporter=DownloadReporter(notify=notices.append))
    assert any("local-dir:handmade has no biomedvr-export.json" in n and "unverified" in n for n in notices)
    result = runner.invoke(app, ["backbones", "export", f"local-dir:{folder}", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    notices.clear()
    load_backbone(f"local-dir:{tmp_path / 'out'}", reporter=DownloadReporter(notify=notices.append))
    assert not any("unverified" in n for n in notices)
