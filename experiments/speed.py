"""CPU speed benchmark: what BioMedVR costs on top of the frozen encoder, and raw ViT-B/16 images/s.

    .venv/bin/python experiments/speed.py                       # sandbox backbone + ViT-B/16, ~1-2 minutes
    .venv/bin/python experiments/speed.py --threads 2 --json

(a) a BioMedVR training step (crop/flip, two VR views, CS loss, backward to the VR
    patterns, SGD step; exactly ``fit``'s step) against the bare frozen encoder forward +
    input-gradient backward for the same views: the head's overhead;
(b) predict throughput (``predict_logits``: two views, k-nearest scoring, gate) against
    the bare ``encode_image`` of the same views, and of one view; and the one-pass predict of
    a head whose views are plain (untrained) against the same head encoding both views (the
    "vs bare" column of that row is its time relative to the two-pass predict);
(c) images/s of a random-init open_clip ViT-B/16 (224 px) on this CPU: forward, and a
    BioMedVR fit step, at a small batch to keep it short.
The sandbox backbone uses its shipped weights when present, else its architecture with
random weights (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _sandbox_backbone():
    import open_clip

    from biomedvr_cli.sandbox import MODEL_CONFIG_PATH, MODEL_NAME, WEIGHTS_PATH

    if WEIGHTS_PATH.is_file():
        from biomedvr_cli.backbones import load_backbone

        return load_backbone("sandbox", device="cpu"), "sandbox (shipped weights)"
    from harness import random_backbone

    open_clip.add_model_config(MODEL_CONFIG_PATH)
    return random_backbone(MODEL_NAME, "cpu"), "sandbox arch. (random init)"


def measure(backbone, label: str, batch: int, steps: int, warmup: int, rows: list[dict]) -> None:
    import torch

    from biomedvr_cli.method.training import predict_logits
    from harness import bare_backward_step, head_train_step, random_head, time_calls

    head = random_head(backbone)
    untrained = {k: v.detach().clone() for k, v in head.trainable_state().items()}
    size = backbone.image_size
    gen = torch.Generator().manual_seed(0)
    images_u8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen)
    images01 = images_u8.float() / 255.0
    labels = torch.randint(0, head.num_classes, (batch,), generator=gen)
    optimizer = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=40.0, momentum=0.9)
    device = backbone.device
    step = time_calls(head_train_step(head, backbone, images01, labels, optimizer, torch.Generator().manual_seed(0), False),
                      device, warmup=warmup, calls=steps)
    views = torch.cat([images01, images01])
    bare = time_calls(bare_backward_step(backbone, views, False), device, warmup=warmup, calls=steps)
    def predict_call():
        return predict_logits(head, backbone.encode_images, images_u8, batch_size=batch, device=device)

    # The timed training steps moved the VR patterns; back to the untrained (plain) views, where
    # since 0.3 a prediction encodes each image once (before this reset the row timed two passes).
    head.load_state_dict(untrained, strict=False)
    assert head.plain_views() and head.encoder_passes == 1
    predict_one = time_calls(predict_call, device, warmup=warmup, calls=steps)
    head.plain_views = lambda: False  # the same head as before 0.3: both views encoded
    predict = time_calls(predict_call, device, warmup=warmup, calls=steps)
    del head.plain_views

    def encode(x):
        def run() -> None:
            with torch.no_grad():
                backbone.encode_images(x)
        return run

    encode2 = time_calls(encode(views), device, warmup=warmup, calls=steps)
    encode1 = time_calls(encode(images01), device, warmup=warmup, calls=steps)
    for what, t, ref in (("fit step: BioMedVR head (2 views)", step, bare),
                         ("fit step floor: bare fwd + input-grad bwd, 2 views", bare, None),
                         ("predict: BioMedVR head (2 views)", predict, encode2),
                         ("predict: plain views, one encoder pass", predict_one, predict),
                         ("bare encode_image, same 2 views", encode2, None),
                         ("bare encode_image, 1 view", encode1, None)):
        rows.append({"backbone": label, "measurement": what, "batch": batch, "ms_per_batch": round(1000 * t.seconds_per_call, 1),
                     "images_per_s": round(batch / t.seconds_per_call, 1),
                     "overhead_vs_bare": None if ref is None else round(t.seconds_per_call / ref.seconds_per_call - 1, 3)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32, help="images per step for the sandbox backbone")
    parser.add_argument("--vit-batch", type=int, default=4, help="images per step for ViT-B/16 (small: it is slow on CPU)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--skip-vit", action="store_true", help="only the sandbox backbone")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = parser.parse_args(argv)

    import torch

    from harness import random_backbone

    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict] = []
    sandbox, label = _sandbox_backbone()
    measure(sandbox, label, args.batch, args.steps, args.warmup, rows)
    if not args.skip_vit:
        measure(random_backbone("ViT-B-16", "cpu"), "ViT-B-16 (random init, 224 px)", args.vit_batch,
                max(1, min(args.steps, 2)), args.warmup, rows)
    doc = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "precision": "fp32", "rows": rows}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"speed on CPU ({doc['cores']} cores, {doc['threads']} torch threads, torch {doc['torch']}, fp32)")
    print(f"{'backbone':38s} {'measurement':52s} {'batch':>5s} {'ms/batch':>9s} {'img/s':>8s} {'vs bare':>8s}")
    for r in rows:
        over = f"{100 * r['overhead_vs_bare']:+.0f}%" if r["overhead_vs_bare"] is not None else ""
        print(f"{r['backbone'][:38]:38s} {r['measurement']:52s} {r['batch']:5d} {r['ms_per_batch']:9.1f} "
              f"{r['images_per_s']:8.1f} {over:>8s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
