"""GPU check: a BioMedVR fit step and predict for a random-init ViT-B/16 at batch 256 in bf16 on CUDA.

    .venv/bin/python experiments/gpu_check.py                 # ViT-B-16, batch 256, bf16
    .venv/bin/python experiments/gpu_check.py --peak-tflops 756 --json

Prints images/s for (1) a training step of the BioMedVR head exactly as ``fit`` runs it
(random resized crop + flip, two VR views through the frozen encoder in bf16 autocast,
CS loss, backward to the VR patterns, SGD step), (2) predict (two views, no grad) and
(3) the bare encoder forward, each with the achieved TFLOPS and the fraction of the
card's dense bf16 peak. FLOPs per image are counted by torch's FLOP counter on the real
model (a multiply-add counts 2), not assumed. The peak comes from a small table by
device name (dense, no sparsity) or ``--peak-tflops``. Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Dense bf16 tensor-core peaks (TFLOPS) from the vendors' data sheets; first matching name wins.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM / HBM3
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
)


def peak_for(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return value
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16", help="open_clip architecture (random init)")
    parser.add_argument("--batch", type=int, default=256, help="images per step (each gives two VR views)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the card's dense bf16 peak")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cuda:N; cpu only for testing the script")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine; nothing to measure (run it on a CUDA GPU).")
        return 0
    from harness import bare_backward_step, count_flops, head_train_step, random_backbone, random_head, time_calls

    from biomedvr_cli.method.training import predict_logits

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if on_cuda else "cpu"
    peak = args.peak_tflops if args.peak_tflops is not None else (peak_for(name) if on_cuda else None)
    backbone = random_backbone(args.model, device)
    head = random_head(backbone)
    size = backbone.image_size
    gen = torch.Generator().manual_seed(0)
    images_u8 = torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8, generator=gen)
    images01 = images_u8.to(device).float() / 255.0
    labels = torch.randint(0, head.num_classes, (args.batch,), generator=gen).to(device)
    optimizer = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=40.0, momentum=0.9)
    cpu_gen = torch.Generator().manual_seed(0)

    # FLOPs per image, counted on two images in fp32 (the same ops as bf16). Forward-only counts run with an
    # input that requires grad, so attention takes its explicit (countable) path instead of a fused kernel.
    two = images01[:2]
    n = two.shape[0]
    fit_flops = count_flops(head_train_step(head, backbone, two, labels[:n], optimizer, cpu_gen, bf16=False)) / n
    head.eval()
    predict_flops = count_flops(lambda: head(two.clone().requires_grad_(True), backbone.encode_images)) / n
    encode_flops = count_flops(lambda: backbone.encode_images(two.clone().requires_grad_(True))) / n
    bare_flops = count_flops(bare_backward_step(backbone, torch.cat([two, two]), bf16=False)) / n

    fit_step = head_train_step(head, backbone, images01, labels, optimizer, cpu_gen, bf16=True)
    fit_t = time_calls(fit_step, device, warmup=args.warmup, calls=args.steps)
    predict_t = time_calls(lambda: predict_logits(head, backbone.encode_images, images_u8, batch_size=args.batch, device=device),
                           device, warmup=args.warmup, calls=args.steps)

    def encode() -> None:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
            backbone.encode_images(images01)

    encode_t = time_calls(encode, device, warmup=args.warmup, calls=args.steps)
    views = torch.cat([images01, images01])
    bare_t = time_calls(bare_backward_step(backbone, views, bf16=True), device, warmup=args.warmup, calls=args.steps)

    rows = []
    for what, t, flops in (("fit step (2 views, fwd + bwd to input)", fit_t, fit_flops),
                           ("bare encoder fwd + input-grad bwd, same 2 views", bare_t, bare_flops),
                           ("predict (2 views, no grad)", predict_t, predict_flops),
                           ("bare encoder forward (1 view)", encode_t, encode_flops)):
        ips = args.batch / t.seconds_per_call
        tflops = ips * flops / 1e12
        rows.append({"measurement": what, "images_per_s": round(ips, 1), "gflops_per_image": round(flops / 1e9, 2),
                     "achieved_tflops": round(tflops, 1),
                     "fraction_of_peak": round(tflops / peak, 3) if peak else None})
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if on_cuda else None
    doc = {"date": datetime.date.today().isoformat(), "device": name, "model": f"{args.model} (random init)",
           "batch": args.batch, "precision": "bf16 autocast" if on_cuda else "fp32 (cpu test run)",
           "peak_bf16_tflops": peak, "peak_source": "--peak-tflops" if args.peak_tflops is not None else "table",
           "torch": torch.__version__, "max_memory_gib": round(peak_mem, 1) if peak_mem else None, "rows": rows}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"gpu_check {doc['date']}: {name}, {doc['model']}, batch {args.batch}, {doc['precision']}, "
          f"peak {peak if peak else 'unknown (pass --peak-tflops)'} TFLOPS, torch {torch.__version__}")
    print(f"{'measurement':50s} {'images/s':>10s} {'GFLOP/img':>10s} {'TFLOPS':>8s} {'of peak':>8s}")
    for r in rows:
        frac = f"{100 * r['fraction_of_peak']:.1f}%" if r["fraction_of_peak"] is not None else "-"
        print(f"{r['measurement']:50s} {r['images_per_s']:10.1f} {r['gflops_per_image']:10.2f} {r['achieved_tflops']:8.1f} {frac:>8s}")
    if peak_mem:
        print(f"max GPU memory allocated: {peak_mem:.1f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
