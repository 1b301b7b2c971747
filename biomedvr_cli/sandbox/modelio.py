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

from biomedvr_cli.errors import BackboneUnavailableError
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

    from biomedvr_cli.backbones.downloads import quiet_loading

    register_config()
    # open_clip logs "No pretrained weights loaded ..." on the root logger for every random init;
    # silenced as every other backbone load is, so stderr holds only biomedvr's own lines.
    with quiet_loading():
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


def _not_sandbox(path: Path, why: str) -> BackboneUnavailableError:
    return BackboneUnavailableError(
        f"{path.name or path} is not a sandbox model: {why}",
        "pass weights written by `biomedvr sandbox pretrain`, or leave out --weights to use the shipped ones")


def _read_state(path: Path) -> dict:
    """The float32 tensors of a safetensors file; anything else (another format, damaged) is not a sandbox model."""
    from safetensors.torch import load_file

    if not path.is_file():  # a folder, FIFO or device: never opened
        what = "not found" if not path.exists() else "is not a regular file"
        raise BackboneUnavailableError(f"sandbox weights {path.name or path} {what}",
                                       "run `biomedvr sandbox pretrain` to create them, or check the --weights path")
    try:
        return {k: v.float() for k, v in load_file(str(path)).items()}
    except (OSError, MemoryError):  # the file could not be read at all: the CLI names it (exit 3)
        raise
    except Exception as exc:  # safetensors raises its own error types for every kind of bad file
        raise _not_sandbox(path, f"not a readable safetensors file ({type(exc).__name__})") from None


def _architecture_mismatch(want: dict, have: dict) -> str:
    """How ``have`` differs from the tensors ``want`` names (empty when it fits exactly)."""
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    reshaped = [k for k in want if k in have and tuple(have[k].shape) != tuple(want[k].shape)]
    parts = [f"{len(keys)} {what}, first {keys[0]}" for keys, what in
             ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if keys]
    return "; ".join(parts)


def _check_finite(model, path: Path) -> None:
    """Refuse weights holding NaN or inf (exit 4, naming the file), as every backbone load does.

    Such weights give NaN features, and the properties measured from them are meaningless
    (a NaN similarity ranks first). The check is the backbone loader's own, so the message
    and the rule are the same for ``--weights`` as for ``--backbone``.
    """
    from biomedvr_cli.backbones.model_checks import check_finite as check_backbone_finite
    from biomedvr_cli.backbones.specs import BackboneSpec

    try:
        check_backbone_finite(model, BackboneSpec(kind="file", model=MODEL_NAME, local_path=path), None)
    except BackboneUnavailableError as exc:  # its fix speaks of downloads and exports; these came from pretrain
        raise BackboneUnavailableError(exc.message, "copy the weights again, or write new ones with "
                                       "`biomedvr sandbox pretrain`") from None


def load_sandbox(path: Path = WEIGHTS_PATH) -> SandboxModel:
    """Load the shipped (or given) weights offline into an eval-mode float32 model."""
    path = Path(path)
    state = _read_state(path)
    model = create_model()
    mismatch = _architecture_mismatch(model.state_dict(), state)
    if mismatch:  # checked here: load_state_dict's own error is a page of tensor names
        raise _not_sandbox(path, f"its tensors do not fit the {MODEL_NAME} architecture ({mismatch})")
    model.load_state_dict(state)
    _check_finite(model, path)
    model.eval()
    return SandboxModel(
        model=model,
        tokenizer=get_tokenizer(),
        image_size=int(model.visual.image_size[0]) if isinstance(model.visual.image_size, tuple) else int(model.visual.image_size),
        logit_scale=float(model.logit_scale.exp().item()),
    )
