"""Building, saving and loading the sandbox open_clip model (safetensors only, no pickle).

The architecture is the JSON config in ``model/``, registered with open_clip under
``biomedvr-sandbox``; preprocessing is open_clip's default (OpenAI mean/std, 96 px), so
any loader that uses open_clip's defaults normalises images the same way we trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biomedvr_cli.sandbox import MODEL_CONFIG_PATH, MODEL_NAME, WEIGHTS_PATH

# open_clip's defaults (OPENAI_DATASET_MEAN / STD); used in pretraining and at inference.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def register_config() -> None:
    """Register the sandbox architecture with open_clip (idempotent)."""
    import open_clip

    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(str(MODEL_CONFIG_PATH))


def create_model():
    """A randomly initialised sandbox model (float32, train mode)."""
    import open_clip

    register_config()
    return open_clip.create_model(MODEL_NAME, pretrained=None)


def get_tokenizer():
    """open_clip's own tokenizer for the sandbox config (SimpleTokenizer, context 32)."""
    import open_clip

    register_config()
    return open_clip.get_tokenizer(MODEL_NAME)


def caption_token_ids(tokenizer) -> set[int]:
    """Token ids that pretraining captions can contain, plus the start and end tokens."""
    from biomedvr_cli.sandbox.captions import caption_phrases

    ids = {tokenizer.sot_token_id, tokenizer.eot_token_id}
    for phrase in caption_phrases():
        ids.update(tokenizer.encode(phrase))
    return ids


UNSEEN_WORDS_SEED_OFFSET = 1000
TOKEN_INIT_STD = 0.02  # open_clip's initialisation of token_embedding


def draw_unseen_words(model, tokenizer, seed: int) -> int:
    """Draw the token-embedding rows of every word no caption contains from their own seed.

    These rows never train (their tokens never occur in a caption, and embeddings get no
    weight decay), so they stay what initialisation made them: random, distinct and
    meaningless, as for any word a real model never saw. Drawing them from a generator of
    their own makes them a documented, separately reproducible part of the model; drawing
    them before or after training gives the same weights, since training never reads them.
    Returns the number of rows drawn.
    """
    import torch

    weight = model.token_embedding.weight
    unseen = torch.ones(weight.shape[0], dtype=torch.bool)
    unseen[sorted(caption_token_ids(tokenizer))] = False
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(int(unseen.sum()), weight.shape[1], generator=generator) * TOKEN_INIT_STD
    with torch.no_grad():
        weight[unseen] = rows.to(weight.dtype)
    return int(unseen.sum())


def save_weights(model, path: Path, metadata: dict[str, Any], *, force: bool = True) -> None:
    """Write the state_dict as fp16 safetensors with string metadata, atomically."""
    import torch
    from safetensors.torch import save_file

    from biomedvr_cli.atomic import write_with_atomic

    state = {k: v.detach().to(torch.float16).contiguous().clone() for k, v in model.state_dict().items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    write_with_atomic(Path(path), lambda tmp: save_file(state, str(tmp), metadata=meta), force=force)


def read_metadata(path: Path = WEIGHTS_PATH) -> dict[str, str]:
    """The safetensors metadata (training settings and results) of a weights file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


@dataclass
class SandboxModel:
    """A loaded sandbox model with the helpers the properties code needs."""

    model: Any
    tokenizer: Any
    image_size: int
    logit_scale: float

    def encode_images(self, x01):
        """Float images in [0,1], [N,3,S,S] -> L2-normalised features."""
        import torch

        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        with torch.no_grad():
            f = self.model.encode_image((x01 - mean) / std)
        return torch.nn.functional.normalize(f.float(), dim=-1)

    def encode_texts(self, texts: list[str]):
        """Sentences -> L2-normalised features."""
        import torch

        with torch.no_grad():
            f = self.model.encode_text(self.tokenizer(texts))
        return torch.nn.functional.normalize(f.float(), dim=-1)


def load_sandbox(path: Path = WEIGHTS_PATH) -> SandboxModel:
    """Load the shipped (or given) weights offline into an eval-mode float32 model."""
    from safetensors.torch import load_file

    from biomedvr_cli.errors import BackboneUnavailableError

    if not Path(path).is_file():
        raise BackboneUnavailableError(
            f"sandbox weights not found at {path}", "run `biomedvr sandbox pretrain` to create them"
        )
    model = create_model()
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    model.eval()
    return SandboxModel(
        model=model,
        tokenizer=get_tokenizer(),
        image_size=int(model.visual.image_size[0]) if isinstance(model.visual.image_size, tuple) else int(model.visual.image_size),
        logit_scale=float(model.logit_scale.exp().item()),
    )
