"""The shipped sandbox weights load offline and have learned the world (fast checks)."""

from __future__ import annotations

import numpy as np
import pytest

from biomedvr_cli.sandbox import MODEL_CONFIG_PATH, WEIGHTS_PATH

needs_weights = pytest.mark.skipif(
    not WEIGHTS_PATH.is_file(), reason="sandbox weights not shipped yet (run `biomedvr sandbox pretrain`)"
)


def test_model_config_is_a_small_open_clip_config() -> None:
    import json

    cfg = json.loads(MODEL_CONFIG_PATH.read_text(encoding="utf-8"))
    assert {"embed_dim", "vision_cfg", "text_cfg"} <= set(cfg)
    assert cfg["text_cfg"]["vocab_size"] == 49408 and cfg["text_cfg"]["width"] <= 96


@needs_weights
def test_weights_are_small_fp16_safetensors_with_settings() -> None:
    from biomedvr_cli.sandbox.modelio import read_metadata

    assert WEIGHTS_PATH.stat().st_size <= 25 * 1024 * 1024
    meta = read_metadata()
    assert meta["format"] == "biomedvr-sandbox-weights" and "seed" in meta["config"]


@needs_weights
def test_shipped_weights_load_offline_and_retrieve_captions() -> None:
    import torch

    from biomedvr_cli.sandbox.captions import make_caption
    from biomedvr_cli.sandbox.properties import load_default_backbone
    from biomedvr_cli.sandbox.draw import render_batch
    from biomedvr_cli.sandbox.world import attrs_to_dict, sample_attrs

    torch.set_num_threads(2)
    bb = load_default_backbone()
    rng = np.random.default_rng(2024)
    attrs = sample_attrs(rng, 100)
    images = torch.from_numpy(render_batch(attrs, rng)).permute(0, 3, 1, 2).float()
    captions = [make_caption(attrs_to_dict(a), rng, full=True) for a in attrs]
    with torch.no_grad():
        img = bb.encode_images(images)
    txt = bb.encode_texts(captions)
    sims = (img @ txt.t()).numpy()
    hits = 0
    for i in range(len(attrs)):
        others = rng.choice(np.delete(np.arange(len(attrs)), i), size=9, replace=False)
        hits += int(np.argmax(sims[i, np.concatenate([[i], others])]) == 0)
    assert hits / len(attrs) >= 0.5  # chance is 0.1; the shipped model scores about 0.9 or more


@needs_weights
def test_properties_command_runs_small(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from biomedvr_cli.cli.app import app

    res = CliRunner().invoke(app, ["sandbox", "properties", "--json", "--n-align", "60", "--per-class", "6"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert {t["task"] for t in report["tasks"]} >= {"blood-smear", "cervical-cytology"}
    assert report["alignment"]["retrieval_top1_of10"] > 0.5 and report["checks"]


def test_draw_unseen_words_changes_only_rows_no_caption_uses() -> None:
    import torch

    from biomedvr_cli.sandbox.modelio import caption_token_ids, create_model, draw_unseen_words, get_tokenizer

    torch.manual_seed(0)
    model = create_model()
    tokenizer = get_tokenizer()
    before = model.token_embedding.weight.detach().clone()
    n = draw_unseen_words(model, tokenizer, seed=5)
    after = model.token_embedding.weight.detach().clone()
    seen = sorted(caption_token_ids(tokenizer))
    assert n == before.shape[0] - len(seen)
    assert torch.equal(after[seen], before[seen])
    changed = (after != before).any(dim=1)
    assert int(changed.sum()) == n
    draw_unseen_words(model, tokenizer, seed=5)
    assert torch.equal(model.token_embedding.weight.detach(), after)  # same seed, same rows


@needs_weights
def test_shipped_unseen_word_rows_are_the_documented_draw() -> None:
    """The rows of words no caption contains are exactly what pretraining's own seed draws."""
    import json

    import torch
    from safetensors.torch import load_file

    from biomedvr_cli.sandbox.modelio import (
        UNSEEN_WORDS_SEED_OFFSET,
        caption_token_ids,
        create_model,
        draw_unseen_words,
        get_tokenizer,
        read_metadata,
    )

    meta = read_metadata()
    recorded = json.loads(meta["unseen_word_rows"])
    assert recorded["seed"] == json.loads(meta["config"])["seed"] + UNSEEN_WORDS_SEED_OFFSET
    shipped = load_file(str(WEIGHTS_PATH))["token_embedding.weight"]
    model = create_model()
    tokenizer = get_tokenizer()
    assert draw_unseen_words(model, tokenizer, recorded["seed"]) == recorded["count"]
    unseen = torch.ones(shipped.shape[0], dtype=torch.bool)
    unseen[sorted(caption_token_ids(tokenizer))] = False
    expected = model.token_embedding.weight.detach()[unseen].to(torch.float16)
    assert torch.equal(shipped[unseen], expected)


@pytest.mark.slow
@needs_weights
def test_shipped_model_meets_every_task_property() -> None:
    """The per-task properties the README reports, at the same sample size (100 test images a class)."""
    import torch

    from biomedvr_cli.sandbox.properties import (
        NO_SHIFT_HEADROOM_MAX,
        PADDING_GAP_MAX,
        SHIFT_BAND,
        SHIFT_DROP_MIN,
        load_default_backbone,
        padding_gap,
        task_properties,
    )
    from biomedvr_cli.sandbox.tasks import list_tasks

    torch.set_num_threads(2)
    backbone = load_default_backbone()
    reports = [task_properties(backbone, task, n_per_class=100, seed=0) for task in list_tasks()]
    for r in reports:
        assert r["class_name_zero_shot_no_shift"] <= r["chance"] + 0.15, r["task"]
        assert SHIFT_BAND[0] <= r["attribute_zero_shot_shift"] <= SHIFT_BAND[1], r["task"]
        assert r["shift_drop"] >= SHIFT_DROP_MIN, r["task"]
        assert r["designed_pairs_are_most_confused"], r["task"]
    assert min(r["attribute_zero_shot_no_shift"] for r in reports) < NO_SHIFT_HEADROOM_MAX
    # (a) of issue 17: the AR/AttrVR padding start keeps what attribute zero-shot has, as on real CLIP-like models
    assert padding_gap(reports, "no_shift") <= PADDING_GAP_MAX and padding_gap(reports, "shift") <= PADDING_GAP_MAX
