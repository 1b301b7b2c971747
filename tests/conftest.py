"""Test setup: no network, no downloaded weights.

Offline flags are set before anything imports huggingface_hub or open_clip, so a test
that would download fails instead of reaching out.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("BIOMEDVR_CACHE_DIR", os.path.join(os.path.dirname(__file__), ".cache-never-used"))
os.environ.pop("BIOMEDVR_ALLOW_DOWNLOAD", None)
os.environ.pop("ANTHROPIC_API_KEY", None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture()
def shared_dir() -> Path:
    """The project's shared/ folder; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_backbone_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random-init tiny open_clip model registered from JSON, saved as safetensors.

    Returns the ``MODEL:WEIGHTS`` spec that ``--backbone`` accepts.
    """
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-backbone")
    config = folder / "biomedvr-tiny-test.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("biomedvr-tiny-test", pretrained=None)
    weights = folder / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return f"biomedvr-tiny-test:{weights}"


@pytest.fixture(scope="session")
def tiny_colour_adapter(tiny_backbone_spec: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(images folder with train/ and test/, adapter, backbone spec): a two-shot fit on the colour tree."""
    from typer.testing import CliRunner

    from biomedvr_cli.cli.app import app

    root = make_color_tree(tmp_path_factory.mktemp("colour-adapter") / "data", per_class=6, splits=("train", "test"))
    write_color_attributes(root / "attributes.json")
    out = root.parent / "a.safetensors"
    result = CliRunner().invoke(app, ["fit", str(root), "--shots", "2", "--backbone", tiny_backbone_spec, "--out",
                                      str(out), "--epochs", "1"])
    assert result.exit_code == 0, result.stderr
    return root, out, tiny_backbone_spec


def make_color_tree(root: Path, per_class: int = 6, size: int = 40, seed: int = 0, splits: tuple[str, ...] = ()) -> Path:
    """A class-per-folder tree of noisy single-colour PNGs (three classes)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = {"alpha cell": (200, 60, 60), "beta cell": (60, 200, 60), "gamma cell": (60, 60, 200)}
    for split in splits or ("",):
        for name, colour in colours.items():
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                noise = rng.normal(0, 25, (size, size, 3))
                Image.fromarray(np.clip(np.array(colour)[None, None] + noise, 0, 255).astype("uint8")).save(folder / f"img{i:02d}.png")
    return root


def write_color_attributes(path: Path) -> Path:
    """A valid attributes file for :func:`make_color_tree`'s classes."""
    import json

    classes = {}
    for name, colour in (("alpha cell", "red"), ("beta cell", "green"), ("gamma cell", "blue")):
        classes[name] = {
            "descriptive": [f"a {colour} cell filling the whole field", f"uniform {colour} staining everywhere"],
            "distinctive": [f"the only class that is entirely {colour}"],
            "confusion": [f"a cell that looks {colour} but is tinted differently"],
        }
    data = {"schema_version": 1, "task": "colour toy task", "classes": classes,
            "provenance": {"provider": "hand-written", "model": "none", "prompt_version": "none", "per_class": 2,
                           "created_at": "2026-11-30T00:00:00Z"}}
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------- a tiny BiomedCLIP in a Hugging Face cache

BIOMEDCLIP_REPO = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDBERT_REPO = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
# Every word of the colour tree's class names, templates and attribute sentences, so nothing is [UNK].
_WORDPIECE = ("a an the of photo image showing picture microscopy medical type finding this is that looks but cell cells "
              "alpha beta gamma red green blue filling whole field uniform staining everywhere only class entirely "
              "tinted differently").split()


def write_hf_repo(hub: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Lay ``files`` out as the Hugging Face cache does after ``hf download``: blobs, a snapshot of symlinks, refs/main."""
    import hashlib

    from biomedvr_cli.backbones.presets import pinned_revision

    base = hub / ("models--" + repo_id.replace("/", "--"))
    # A repo a preset pins is laid out at that commit, as `hf download REPO --revision COMMIT` leaves it.
    commit = pinned_revision(repo_id) or hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = base / "snapshots" / commit
    (base / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = base / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def tiny_biomedclip_files(seed: int = 0) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(BiomedCLIP repo files, BiomedBERT repo files): the real repos' layout and config structure, tiny random weights.

    A timm test ViT (160 px) stands in for ViT-B/16 and a one-layer BERT with a WordPiece vocab for
    PubMedBERT; open_clip_config.json has the real keys (timm tower, HF text tower with an MLP
    projection and CLS pooling, preprocessing), the weights are ``open_clip_pytorch_model.bin``.
    """
    import io
    import json
    import math
    import tempfile

    import torch

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *_WORDPIECE, *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]]
    bert_config = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
                   "num_attention_heads": 2, "intermediate_size": 37, "vocab_size": len(vocab),
                   "max_position_embeddings": 64, "type_vocab_size": 2, "pad_token_id": 0, "hidden_act": "gelu",
                   "layer_norm_eps": 1e-12, "initializer_range": 0.02}
    text = {"config.json": json.dumps(bert_config).encode(), "vocab.txt": ("\n".join(vocab) + "\n").encode(),
            "tokenizer_config.json": json.dumps({"do_lower_case": True}).encode()}
    config = {"model_cfg": {"embed_dim": 16,
                            "vision_cfg": {"timm_model_name": "test_vit", "timm_model_pretrained": False, "timm_pool": "",
                                           "timm_proj": "linear", "image_size": 160},
                            "text_cfg": {"hf_model_name": BIOMEDBERT_REPO, "hf_tokenizer_name": BIOMEDBERT_REPO,
                                         "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                                         "context_length": 32}},
              "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_bytes(text["config.json"])
        local_cfg = json.loads(json.dumps(config["model_cfg"]))
        local_cfg["text_cfg"]["hf_model_name"] = tmp
        torch.manual_seed(seed)  # the BERT config is read from the temporary folder, not the hub
        model = _build_custom_text_clip(local_cfg)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(60.0))  # BiomedCLIP's learned temperature is not CLIP's 100
    buffer = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buffer)
    clip_files = {"open_clip_config.json": json.dumps(config, indent=2).encode(), "open_clip_pytorch_model.bin": buffer.getvalue()}
    return clip_files, text


def _build_custom_text_clip(model_cfg: dict):
    from open_clip.model import CustomTextCLIP

    return CustomTextCLIP(embed_dim=model_cfg["embed_dim"], vision_cfg=model_cfg["vision_cfg"],
                          text_cfg={**model_cfg["text_cfg"], "hf_model_pretrained": False})


@pytest.fixture(scope="session")
def tiny_biomedclip_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF_HOME whose hub cache holds the tiny BiomedCLIP and BiomedBERT repos (read-only by convention)."""
    home = tmp_path_factory.mktemp("hf-home")
    clip_files, text_files = tiny_biomedclip_files()
    write_hf_repo(home / "hub", BIOMEDCLIP_REPO, clip_files)
    write_hf_repo(home / "hub", BIOMEDBERT_REPO, text_files)
    return home


def use_hf_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """Point this process (and subprocesses) at ``home`` as HF_HOME, with the hub offline."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HOME", str(home))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return home


@pytest.fixture()
def biomedclip_hf_home(tiny_biomedclip_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HOME pointed at the tiny BiomedCLIP cache, offline, for this test."""
    return use_hf_home(monkeypatch, tiny_biomedclip_home)


@pytest.fixture()
def empty_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HOME pointed at an empty folder, offline, for this test."""
    (tmp_path / "empty-hf-home" / "hub").mkdir(parents=True)
    return use_hf_home(monkeypatch, tmp_path / "empty-hf-home")


def edited_adapter(adapter: Path, out: Path, edit, *, keep_digest: bool = False) -> Path:
    """A copy of ``adapter`` after ``edit(tensors, config)`` (the config as a dict). Without ``keep_digest``
    the content digest is dropped, as in an adapter of an earlier biomedvr, so that the load checks
    after the digest are what a test reaches."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(adapter), framework="pt") as handle:
        metadata = dict(handle.metadata())
    if not keep_digest:
        metadata.pop("content_sha256", None)
    config, tensors = json.loads(metadata["config"]), load_file(str(adapter))
    edit(tensors, config)
    metadata["config"] = json.dumps(config)
    save_file(tensors, str(out), metadata=metadata)
    return out
