"""CoOp-style prompt learning on a frozen open_clip text tower (baseline).

The prompt of class c is ``[SOT] ctx_1 .. ctx_4 <class name tokens> . [EOT]``: four
learnable context vectors right after the start token, the class token at the end
(CoOp's "end" position). They are trained with cross-entropy against frozen image
features; the text tower and the image tower stay frozen.

Three text towers are supported:
- open_clip's ``CLIP`` (token_embedding, positional_embedding, transformer with the
  causal ``attn_mask``, ln_final, text_projection; pooling by ``text_pool_type``);
- a ``CustomTextCLIP`` whose ``text`` is open_clip's ``TextTransformer`` (same parts,
  plus its optional class embedding and padding mask);
- a ``CustomTextCLIP`` whose ``text`` is an ``HFTextEncoder`` (BiomedCLIP's PubMedBERT):
  the word embeddings are spliced and fed as ``inputs_embeds`` (the model adds its own
  position and token-type embeddings), with the padding attention mask and the tower's
  pooler and projection.
Pooling reads the original token ids, which are unchanged by the splice, so argmax/EOT
pooling still finds the end token.

The recipe follows CoOp (SGD, lr 0.002, momentum 0.9, cosine, batch 32; 50 epochs for
1-2 shots, 100 for 4-8, 200 for 16+), with the context initialised from "a photo of a"
when that is four tokens. Image features are the frozen, un-augmented ones (cached),
so one step costs one text-tower pass over the class prompts. Selection is on the
validation split, like every other method.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from biomedvr_cli.errors import BiomedVRError

N_CTX = 4
CTX_INIT = "a photo of a"
PLACEHOLDER = "X"


@dataclass(frozen=True)
class CoOpRecipe:
    """CoOp's published schedule; ``epochs`` None means by shots (50 / 100 / 200)."""

    lr: float = 0.002
    momentum: float = 0.9
    batch_size: int = 32
    epochs: int | None = None
    eval_every: int = 5

    def epochs_for(self, shots: int) -> int:
        if self.epochs is not None:
            return max(1, self.epochs)
        return 50 if shots <= 2 else (100 if shots <= 8 else 200)

    def to_dict(self) -> dict:
        return asdict(self)


class TextTower:
    """Uniform access to an open_clip model's text tower: token embeddings in, features out."""

    def __init__(self, model: nn.Module) -> None:
        text = getattr(model, "text", None)
        if text is not None and hasattr(text, "transformer") and hasattr(text, "pooler") and hasattr(text, "config"):
            self.kind = "hf"
            self.hf = text
        elif text is not None and hasattr(text, "token_embedding"):
            self.kind = "text-transformer"
            self.tt = text
            self.pool_type = text.pool_type
            self.eos_id = getattr(text, "eos_id", None)
        elif hasattr(model, "token_embedding"):
            self.kind = "clip"
            self.tt = model
            self.pool_type = getattr(model, "text_pool_type", "argmax")
            self.eos_id = getattr(model, "text_eos_id", None)
        else:
            raise BiomedVRError("CoOp does not know this backbone's text tower",
                                "use a CLIP, TextTransformer or Hugging Face text tower, or leave coop out of --methods")

    @property
    def width(self) -> int:
        return int(self.embed(torch.zeros(1, 1, dtype=torch.long, device=self.device)).shape[-1])

    @property
    def device(self) -> torch.device:
        module = self.hf if self.kind == "hf" else self.tt
        return next(module.parameters()).device

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Word (token) embeddings [B, L, W], no positions."""
        if self.kind == "hf":
            return self.hf.transformer.get_input_embeddings()(ids)
        return self.tt.token_embedding(ids)

    def encode(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Text features [B, D] (not normalised) from token embeddings and the original ids."""
        if self.kind == "hf":
            return self._encode_hf(embeds, ids)
        return self._encode_open_clip(embeds, ids)

    def _encode_hf(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        hf = self.hf
        attn_mask = (ids != hf.config.pad_token_id).long()
        out = hf.transformer(inputs_embeds=embeds, attention_mask=attn_mask)
        return hf.proj(hf.pooler(out, attn_mask))

    def _encode_open_clip(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        from open_clip.transformer import text_global_pool

        tt = self.tt
        cast = tt.transformer.get_cast_dtype()
        x = embeds.to(cast)
        seq_len = ids.shape[1]
        cls_emb = getattr(tt, "cls_emb", None)
        if cls_emb is not None:  # CoCa-style class token appended at the end
            x = torch.cat([x, cls_emb.view(1, 1, -1).expand(x.shape[0], 1, -1).to(x.dtype)], 1)
            seq_len += 1
        attn_mask = tt.attn_mask
        if getattr(tt, "use_pad_mask", False) or cls_emb is not None:
            add = tt._build_additive_mask(ids, seq_len, x.dtype)
            attn_mask = add if attn_mask is None else attn_mask[:seq_len, :seq_len].unsqueeze(0) + add
        elif attn_mask is not None:
            attn_mask = attn_mask[:seq_len, :seq_len]
        x = x + tt.positional_embedding[:seq_len].to(cast)
        x = tt.transformer(x, attn_mask=attn_mask)
        if cls_emb is not None:
            pooled = tt.ln_final(x[:, -1])
        else:
            x = tt.ln_final(x)
            pooled = text_global_pool(x, ids, self.pool_type, eos_token_id=self.eos_id)
        proj = tt.text_projection
        if proj is not None:
            pooled = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
        return pooled


class CoOpPrompts(nn.Module):
    """Learnable context vectors shared by all classes (unified context, class token at the end)."""

    def __init__(self, tower: TextTower, tokenizer, classes: list[str], n_ctx: int = N_CTX) -> None:
        super().__init__()
        self.tower = tower
        self.n_ctx = n_ctx
        device = tower.device
        prompts = [" ".join([PLACEHOLDER] * n_ctx) + " " + name + "." for name in classes]
        ids = tokenizer(prompts).to(device)
        placeholder = tokenizer([PLACEHOLDER]).to(device)[0, 1]
        if not bool((ids[:, 1 : 1 + n_ctx] == placeholder).all()):
            raise BiomedVRError("CoOp cannot place its context tokens with this tokenizer",
                                "leave coop out of --methods for this backbone")
        self.register_buffer("ids", ids, persistent=False)
        with torch.no_grad():
            base = tower.embed(ids).float()
            init_ids = tokenizer([CTX_INIT]).to(device)
            init = tower.embed(init_ids)[0, 1 : 1 + n_ctx].float()
            # Use the words' embeddings only when the phrase is exactly n_ctx tokens.
            n_words = int(_content_length(init_ids[0], tokenizer, tower))
            ctx = init.clone() if n_words == n_ctx else torch.randn(n_ctx, base.shape[-1], device=device) * 0.02
        self.register_buffer("prefix", base[:, :1].clone(), persistent=False)
        self.register_buffer("suffix", base[:, 1 + n_ctx :].clone(), persistent=False)
        self.ctx = nn.Parameter(ctx)

    def forward(self) -> torch.Tensor:
        """L2-normalised class text features [C, D]."""
        c = self.ids.shape[0]
        embeds = torch.cat([self.prefix, self.ctx.unsqueeze(0).expand(c, -1, -1), self.suffix], dim=1)
        return F.normalize(self.tower.encode(embeds.to(self.prefix.dtype), self.ids).float(), dim=-1)


def _content_length(ids: torch.Tensor, tokenizer, tower: TextTower) -> int:
    """Number of tokens between the start and end tokens of one tokenized phrase."""
    if tower.kind == "hf":
        pad = tower.hf.config.pad_token_id
        return int((ids != pad).sum()) - 2
    return int(ids.argmax()) - 1  # CLIP BPE: the end token has the highest id


@dataclass
class CoOpResult:
    logits: torch.Tensor  # test logits [N, C]
    seconds: float
    selected_epoch: int
    selection_rule: str
    val_accuracy: float | None


def train_coop(
    backbone,
    classes: list[str],
    train_feats: torch.Tensor,
    train_y: torch.Tensor,
    val_feats: torch.Tensor,
    val_y: torch.Tensor,
    test_feats: torch.Tensor,
    recipe: CoOpRecipe,
    *,
    seed: int,
    shots: int,
) -> CoOpResult:
    """Learn the context on frozen features, select on validation, return test logits."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    tower = TextTower(backbone.model)
    prompts = CoOpPrompts(tower, backbone.tokenizer, classes)
    device = tower.device
    scale = float(backbone.logit_scale)
    optimizer = torch.optim.SGD([prompts.ctx], lr=recipe.lr, momentum=recipe.momentum)
    epochs = recipe.epochs_for(shots)
    n = train_feats.shape[0]
    steps_per_epoch = max(1, math.ceil(n / recipe.batch_size))
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    x, y = train_feats.to(device), train_y.to(device)
    has_val = val_feats.shape[0] > 0
    best: tuple[float, float] | None = None
    best_ctx, best_epoch, best_acc = prompts.ctx.detach().clone(), epochs, None
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator).to(device)
        for step in range(steps_per_epoch):
            idx = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            logits = scale * x[idx] @ prompts().t()
            loss = F.cross_entropy(logits, y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if has_val and (epoch % recipe.eval_every == 0 or epoch == epochs):
            with torch.no_grad():
                val_logits = scale * val_feats.to(device) @ prompts().t()
                acc = float((val_logits.argmax(1).cpu() == val_y).float().mean())
                nll = float(F.cross_entropy(val_logits.cpu(), val_y))
            if best is None or (acc, -nll) > best:
                best, best_ctx, best_epoch, best_acc = (acc, -nll), prompts.ctx.detach().clone(), epoch, acc
    if has_val:
        with torch.no_grad():
            prompts.ctx.copy_(best_ctx)
        rule = f"best validation accuracy (ties: lower validation NLL), evaluated every {recipe.eval_every} epoch(s)"
    else:
        best_epoch, rule = epochs, "last epoch (no validation split)"
    seconds = time.perf_counter() - start
    with torch.no_grad():
        test_logits = (scale * test_feats.to(device) @ prompts().t()).float().cpu()
    return CoOpResult(test_logits, seconds, best_epoch, rule, best_acc)
