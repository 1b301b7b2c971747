"""One test per loader bug of issue 13, and downloads: offline, unreachable hub, first use.

Bug 1 (a copied BiomedCLIP folder is not self-contained) is in test_backbones_hub.py.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from biomedvr_cli.backbones import load_backbone, parse_backbone
from biomedvr_cli.backbones.downloads import DownloadReporter
from biomedvr_cli.backbones.fingerprint import legacy_fingerprint, weights_fingerprint
from biomedvr_cli.backbones.loader import describe_availability
from biomedvr_cli.cli.app import app
from biomedvr_cli.errors import BackboneUnavailableError
from tests.conftest import (
    BIOMEDBERT_REPO,
    BIOMEDCLIP_REPO,
    TINY_CONFIG,
    make_color_tree,
    tiny_biomedclip_files,
    write_color_attributes,
    write_hf_repo,
)

runner = CliRunner()
TINY = "biomedvr-tiny-test"  # registered by the tiny_backbone_spec fixture


def _uses_quick_gelu(model: torch.nn.Module) -> bool:
    return any(type(m).__name__ == "QuickGELU" for m in model.modules())


@pytest.fixture(scope="module")
def openai_archive(tmp_path_factory: pytest.TempPathFactory, tiny_backbone_spec: str) -> tuple[Path, torch.nn.Module]:
    """A TorchScript CLIP archive, as OpenAI's ``clip`` package leaves ~/.cache/clip/ViT-B-16.pt, and its model."""
    import warnings

    import open_clip

    torch.manual_seed(1)
    model = open_clip.create_model(TINY, force_quick_gelu=True).eval()
    archive = tmp_path_factory.mktemp("jit") / "tiny-openai.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, but that is how OpenAI shipped CLIP
        torch.jit.script(model).save(str(archive))
    return archive, model


@pytest.fixture()
def openai_tag(monkeypatch: pytest.MonkeyPatch, tiny_backbone_spec: str) -> dict:
    """An ``openai`` pretrained tag for the tiny architecture, shaped like ViT-B-16's."""
    from open_clip import pretrained

    cfg = {"url": "https://openaipublic.example/clip/models/0123/tiny-openai.pt", "hf_hub": "nobody/tiny-openai/",
           "quick_gelu": True, "mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711)}
    monkeypatch.setitem(pretrained._PRETRAINED, TINY, {"openai": cfg})
    return cfg


def test_bug2_openai_torchscript_archive_loads(openai_archive, openai_tag, empty_hf_home: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    archive, reference = openai_archive
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".cache" / "clip").mkdir(parents=True)
    (tmp_path / ".cache" / "clip" / "tiny-openai.pt").write_bytes(archive.read_bytes())
    available, note = describe_availability(parse_backbone(f"{TINY}:openai"))
    assert available and "TorchScript" in note
    images = torch.rand(2, 3, 32, 32)
    normalized = (images - torch.tensor(openai_tag["mean"]).view(1, 3, 1, 1)) / torch.tensor(openai_tag["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference.encode_image(normalized).float(), dim=-1)
    for spec in (f"{TINY}:openai", f"{TINY}:{archive}"):  # the cached tag, and the MODEL:WEIGHTS form
        backbone = load_backbone(spec, allow_download=False)
        assert _uses_quick_gelu(backbone.model), spec
        assert backbone.fingerprint == weights_fingerprint(reference), spec
        assert torch.allclose(backbone.encode_images(images), expected, atol=1e-5), spec


def test_bug3_openai_weights_get_quick_gelu_in_every_form(openai_archive, openai_tag, tmp_path: Path) -> None:
    _, reference = openai_archive
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    named = {"openai folder": tmp_path / "openai" / "tiny.safetensors",
             "openai in the file name": tmp_path / "w" / "tiny-openai.safetensors",
             "hub cache": tmp_path / "models--nobody--tiny-openai" / "snapshots" / "x" / "open_clip_model.safetensors"}
    for path in [*named.values(), tmp_path / "plain" / "tiny.safetensors"]:
        path.parent.mkdir(parents=True)
        save_file(state, str(path))
    for what, path in named.items():
        backbone = load_backbone(f"{TINY}:{path}")
        assert _uses_quick_gelu(backbone.model), what
        assert backbone.fingerprint == weights_fingerprint(reference), what
    notices: list[str] = []
    plain = load_backbone(f"{TINY}:{tmp_path / 'plain' / 'tiny.safetensors'}", reporter=DownloadReporter(notify=notices.append))
    assert not _uses_quick_gelu(plain.model)
    assert plain.fingerprint != weights_fingerprint(reference)  # GELU features never pass for the OpenAI model
    assert any(f"{TINY}-quickgelu:FILE" in n for n in notices)
    result = runner.invoke(app, ["backbones", "export", f"{TINY}:{named['openai folder']}", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "exp" / "open_clip_config.json").read_text())["model_cfg"]["quick_gelu"] is True
    exported = load_backbone(f"local-dir:{tmp_path / 'exp'}")
    assert _uses_quick_gelu(exported.model) and exported.fingerprint == weights_fingerprint(reference)


def test_bug4_fingerprint_is_equal_for_fp32_and_fp16_copies(tiny_backbone_spec: str, tmp_path: Path) -> None:
    weights = Path(tiny_backbone_spec.split(":", 1)[1])
    half = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
    save_file(half, str(tmp_path / "tiny-fp16.safetensors"))
    fp32 = load_backbone(tiny_backbone_spec)
    fp16 = load_backbone(f"{TINY}:{tmp_path / 'tiny-fp16.safetensors'}")
    assert fp32.fingerprint == fp16.fingerprint
    # Values at the 0.1.0 fingerprint's rounding boundaries: its fp32 and fp16 results differ, ours do not.
    edge = torch.nn.Linear(16, 16, bias=False)
    with torch.no_grad():
        edge.weight.copy_(((torch.arange(256, dtype=torch.float64) + 0.5) / 1000 + 3e-8).view(16, 16).float())
    edge_half = copy.deepcopy(edge).half()
    assert legacy_fingerprint(edge) != legacy_fingerprint(edge_half)  # the bug, as it was
    assert weights_fingerprint(edge) == weights_fingerprint(edge_half)
    # Adapters of biomedvr 0.1.0 recorded the old fingerprint: still accepted for the same weights.
    assert fp32.fingerprint_for(legacy_fingerprint(fp32.model)) == legacy_fingerprint(fp32.model)
    assert fp32.fingerprint_for("sha256:0000000000000000") == fp32.fingerprint


def test_bug5_preprocessing_mismatch_is_exit_4_unless_accepted(tiny_backbone_spec: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    config = {"model_cfg": TINY_CONFIG, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    (folder / "open_clip_model.safetensors").write_bytes(Path(tiny_backbone_spec.split(":", 1)[1]).read_bytes())
    tree = make_color_tree(tmp_path / "data", per_class=3, size=32)
    write_color_attributes(tree / "attributes.json")
    adapter = tmp_path / "a.safetensors"
    backbone = ["--backbone", f"local-dir:{folder}", "--device", "cpu"]
    fit = runner.invoke(app, ["fit", str(tree), "--shots", "1", "--val-shots", "0", "--epochs", "1", "--out", str(adapter), *backbone])
    assert fit.exit_code == 0, fit.stderr
    config["preprocess_cfg"]["mean"] = [0.4, 0.4, 0.4]  # someone edited the folder's normalisation
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    image = str(next((tree / "alpha cell").iterdir()))
    refused = runner.invoke(app, ["predict", image, "--adapter", str(adapter), *backbone])
    assert refused.exit_code == 4
    assert "mean (0.4, 0.4, 0.4)" in refused.stderr and "--accept-preprocessing" in refused.stderr
    assert runner.invoke(app, ["eval", str(tree), "--adapter", str(adapter), *backbone]).exit_code == 4
    accepted = runner.invoke(app, ["predict", image, "--adapter", str(adapter), "--accept-preprocessing", *backbone])
    assert accepted.exit_code == 0, accepted.stderr
    assert "warning:" in accepted.stderr and "--accept-preprocessing" in accepted.stderr
    evaluated = runner.invoke(app, ["eval", str(tree), "--adapter", str(adapter), "--accept-preprocessing", "--json", *backbone])
    assert evaluated.exit_code == 0, evaluated.stderr


# ---------------------------------------------------------------- downloads


def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let this test's process believe it may use the network (conftest sets HF_HUB_OFFLINE=1)."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("BIOMEDVR_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


def _no_network(*_args, **_kwargs):
    raise AssertionError("the network was used")


def test_offline_never_touches_the_network(empty_hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from biomedvr_cli.backbones import downloads

    monkeypatch.setattr(downloads, "_list_repo", _no_network)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _no_network)
    with pytest.raises(BackboneUnavailableError, match="HF_HUB_OFFLINE=1 is set"):
        load_backbone("biomedclip", allow_download=True)
    _online(monkeypatch)
    with pytest.raises(BackboneUnavailableError, match="--offline was given") as info:
        load_backbone("biomedclip", allow_download=False)
    from biomedvr_cli.backbones.presets import pinned_revision

    assert (f"hf download {BIOMEDCLIP_REPO} --revision {pinned_revision(BIOMEDCLIP_REPO)} && "
            f"hf download {BIOMEDBERT_REPO} --revision {pinned_revision(BIOMEDBERT_REPO)}") in info.value.hint
    monkeypatch.setenv("BIOMEDVR_ALLOW_DOWNLOAD", "0")
    with pytest.raises(BackboneUnavailableError, match="BIOMEDVR_ALLOW_DOWNLOAD=0"):
        load_backbone("clip-vit-b16")
    result = runner.invoke(app, ["predict", "x.png", "--adapter", "missing.safetensors", "--offline-backbone"])
    assert result.exit_code != 0  # the old flag name is still accepted (the missing adapter fails first)
    assert "No such option" not in result.stderr


def test_unreachable_hub_fails_fast_with_one_line(empty_hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants

    _online(monkeypatch)
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    tree = make_color_tree(tmp_path / "imgs", per_class=2, size=32)
    handlers = list(logging.getLogger().handlers)
    start = time.perf_counter()
    result = runner.invoke(app, ["fit", str(tree), "--shots", "1", "--allow-download", "--out", str(tmp_path / "a.safetensors")])
    assert time.perf_counter() - start < 20
    assert result.exit_code == 4
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is unreachable" in errors[0]
    assert f"hf download {BIOMEDCLIP_REPO}" in errors[0] and "local-dir:" in errors[0]
    assert "Retry" not in result.stderr and "WARNING" not in result.stderr and len(result.stderr.splitlines()) <= 6
    assert logging.getLogger().handlers == handlers  # open_clip's logging did not install a root handler


@pytest.fixture()
def fake_hub(empty_hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A reachable hub serving the tiny BiomedCLIP repos (plus files we must not fetch); returns what was fetched."""
    import huggingface_hub

    from biomedvr_cli.backbones import downloads

    _online(monkeypatch)
    clip_files, text_files = tiny_biomedclip_files()
    remote = {BIOMEDCLIP_REPO: {**clip_files, "README.md": b"# card"}, BIOMEDBERT_REPO: {**text_files, "pytorch_model.bin": b"x" * 99}}
    fetched: list[str] = []

    def listing(repo: str, source: str, hint_repos: list[str]) -> dict[str, int]:
        return {name: len(data) for name, data in remote[repo].items()}

    def download(repo_id: str, filename: str, *, tqdm_class=None, **_kwargs) -> str:
        data = remote[repo_id][filename]
        bar = tqdm_class(total=len(data), unit="B")  # as huggingface_hub drives it
        bar.update(len(data) // 2)
        bar.update(len(data) - len(data) // 2)
        bar.close()
        fetched.append(f"{repo_id}/{filename}")
        return str(write_hf_repo(empty_hf_home / "hub", repo_id, {filename: data}) / filename)

    monkeypatch.setattr(downloads, "_list_repo", listing)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return fetched


def test_first_use_downloads_with_notice_and_progress(fake_hub: list[str], empty_hf_home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.backbones import downloads

    notices, progress, finished = [], [], []
    reporter = DownloadReporter(notify=notices.append, progress=lambda *a: progress.append(a),
                                finish=lambda: finished.append(True))
    backbone = load_backbone("biomedclip", reporter=reporter)
    assert backbone.image_size == 160
    assert sorted(fake_hub) == sorted([f"{BIOMEDCLIP_REPO}/open_clip_config.json", f"{BIOMEDCLIP_REPO}/open_clip_pytorch_model.bin",
                                       f"{BIOMEDBERT_REPO}/config.json", f"{BIOMEDBERT_REPO}/vocab.txt",
                                       f"{BIOMEDBERT_REPO}/tokenizer_config.json"])  # no card, no BERT weights
    assert len(notices) == 2 and BIOMEDCLIP_REPO in notices[0] and BIOMEDBERT_REPO in notices[1]
    assert "https://huggingface.co" in notices[0] and "1.3 MB" in notices[0] and str(empty_hf_home / "hub") in notices[0]
    weights = [p for p in progress if p[0].endswith("open_clip_pytorch_model.bin")]
    assert weights[-1][1] == weights[-1][2] and weights[-1][2] > 1_000_000
    assert finished
    monkeypatch.setattr(downloads, "_list_repo", _no_network)  # the second use is offline, from the cache
    assert load_backbone("biomedclip").fingerprint == backbone.fingerprint


def test_commands_show_the_download_notice(fake_hub: list[str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["backbones", "export", "biomedclip", str(tmp_path / "exported")])
    assert result.exit_code == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if line.startswith("downloading ")]
    assert len(notices) == 2 and f"downloading {BIOMEDCLIP_REPO} for backbone 'biomedclip'" in notices[0]
