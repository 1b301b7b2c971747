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
