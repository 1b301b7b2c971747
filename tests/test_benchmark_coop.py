"""CoOp on open_clip's own text tower and on a Hugging Face (BERT) text tower, all offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.backbones import load_backbone
from biomedvr_cli.benchmark.coop import CoOpPrompts, TextTower
from tests.conftest import TINY_CONFIG, make_color_tree, write_color_attributes

CLASSES = ["alpha cell", "beta cell", "gamma cell"]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "x", "a", "photo", "of", "an", "image", "alpha", "beta",
         "gamma", "cell", "red", "green", "blue", "microscopy", "medical", "showing", "type", "finding", "the"]


@pytest.fixture(scope="module")
def hf_backbone_spec(tmp_path_factory) -> str:
    """A tiny CustomTextCLIP with a BERT text tower and a WordPiece tokenizer, saved as a local-dir backbone.

    Everything is built from a written vocab and a BertConfig: no download. open_clip's
    HFTextEncoder reads the BERT config by name (here: the folder), so the folder holds
    config.json, the tokenizer files, open_clip_config.json and the weights.
    """
    transformers = pytest.importorskip("transformers", reason="transformers is needed for a Hugging Face text tower")
    from open_clip.model import CustomTextCLIP
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("hf-tower")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    try:
        transformers.BertTokenizer(str(folder / "vocab.txt")).save_pretrained(str(folder))
    except Exception as exc:  # pragma: no cover - depends on the installed tokenizers
        pytest.skip(f"cannot build an offline BERT tokenizer here: {exc}")
    transformers.BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64).save_pretrained(str(folder))
    text_cfg = {"hf_model_name": str(folder), "hf_tokenizer_name": str(folder), "hf_proj_type": "linear",
                "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 24}
    torch.manual_seed(0)
    model = CustomTextCLIP(embed_dim=32, vision_cfg=TINY_CONFIG["vision_cfg"], text_cfg={**text_cfg, "hf_model_pretrained": False})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    model_cfg = {"embed_dim": 32, "vision_cfg": TINY_CONFIG["vision_cfg"], "text_cfg": text_cfg}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    return f"local-dir:{folder}"


def _check_tower(spec: str, kind: str) -> None:
    backbone = load_backbone(spec, device="cpu")
    tower = TextTower(backbone.model)
    assert tower.kind == kind
    prompts = CoOpPrompts(tower, backbone.tokenizer, CLASSES)
    # Initialised from the words "a photo of a", not random.
    init = tower.embed(backbone.tokenizer(["a photo of a"]))[0, 1:5]
    assert torch.allclose(prompts.ctx.detach(), init)
    # With the placeholder tokens' own embeddings as context, the spliced path is exactly encode_text:
    # positions, attention/padding mask and EOT/CLS pooling are all taken into account.
    with torch.no_grad():
        prompts.ctx.copy_(tower.embed(prompts.ids)[0, 1:5])
        spliced = prompts()
    reference = backbone.encode_texts([f"X X X X {c}." for c in CLASSES])
    assert torch.allclose(spliced, reference, atol=1e-5)
    # Gradients reach the context (and nothing else in the frozen tower).
    feats = F.normalize(torch.randn(6, backbone.embed_dim), dim=-1)
    loss = F.cross_entropy(backbone.logit_scale * feats @ prompts().t(), torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    assert prompts.ctx.grad is not None and float(prompts.ctx.grad.abs().sum()) > 0
    assert all(p.grad is None for p in backbone.model.parameters())


def test_coop_on_open_clip_text_tower(tiny_backbone_spec: str) -> None:
    _check_tower(tiny_backbone_spec, "clip")


def test_coop_on_hugging_face_text_tower(hf_backbone_spec: str) -> None:
    _check_tower(hf_backbone_spec, "hf")


def test_benchmark_coop_runs_on_hf_tower(hf_backbone_spec: str, tmp_path: Path) -> None:
    tree = make_color_tree(tmp_path / "colours", per_class=4, size=32, splits=("train", "test"))
    write_color_attributes(tree / "attributes.json")
    result = CliRunner().invoke(app, ["benchmark", str(tree), "--backbone", hf_backbone_spec, "--methods",
                                      "coop,zs-classname,attrvr", "--shots", "1", "--seeds", "1", "--epochs", "3",
                                      "--out", str(tmp_path / "out"), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    coop = next(j for j in doc["jobs"] if j["method"] == "coop")
    cm = coop["confusion_matrix"]
    assert sum(map(sum, cm)) == coop["test_images"] == 12
    assert coop["metrics"]["accuracy"] == pytest.approx(sum(cm[i][i] for i in range(3)) / 12)
    assert "validation" in coop["selection"]
