"""``benchmark`` as a library call: run every (dataset, method, shots, seed) job, store, merge, report.

Per job: draw the support and validation sets with the job's seed (``sample_few_shot``),
fit the method (selection on validation only), score the fixed test set, compute the
metrics (``evaluation.compute_metrics``), and write the job's JSON file at once. Under
``torchrun`` each rank runs its shard; rank 0 gathers every result, writes any it does
not have on its disk (nodes without a shared file system), and writes the reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from biomedvr_cli import __version__
from biomedvr_cli.benchmark.datasets import LoadedDataset, load_dataset
from biomedvr_cli.distributed import DistContext, rank_device
from biomedvr_cli.benchmark.methods import METHODS, JobInputs, Overrides, estimated_cost, method_signature, run_method
from biomedvr_cli.benchmark.protocol import DatasetSpec, Job, check_unique_names, make_jobs
from biomedvr_cli.benchmark.report import summarize, write_reports
from biomedvr_cli.benchmark.store import JobStore, settings_hash
from biomedvr_cli.data import DecodeOptions, sample_few_shot
from biomedvr_cli.data.sampling import default_val_shots
from biomedvr_cli.errors import BiomedVRError, UsageError

SELECTION = "validation split drawn beside the support set (never the test set)"
VOLATILE_KEYS = ("fit_seconds", "rank", "finished_at")  # differ between otherwise identical runs


@dataclass
class BenchmarkRequest:
    """Everything ``benchmark`` needs; CLI options map onto these fields."""

    datasets: list[DatasetSpec]
    out: Path
    backbone: str = "biomedclip"
    methods: list[str] = field(default_factory=lambda: ["biomedvr"])
    shots: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: Overrides = field(default_factory=Overrides)
    val_shots: int | None = None
    allow_fewer: bool = False
    device: str = "auto"
    allow_download: bool | None = None
    force: bool = False
    decode: DecodeOptions = field(default_factory=DecodeOptions)


@dataclass
class JobEvent:
    """Progress report after each job of this rank's shard."""

    job: Job
    done: int
    total: int
    status: str  # "skipped" (already stored) | "done" | "failed"
    seconds: float = 0.0
    accuracy: float | None = None
    error: str | None = None


@dataclass
class BenchmarkOutcome:
    """What rank 0 returns: the summary rows, every job's result, failures and the written files."""

    document: dict[str, Any]
    rows: list[dict[str, Any]]
    results: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    outputs: dict[str, Path]
    ran: int
    skipped: int


def _check_methods(request: BenchmarkRequest, datasets: list[LoadedDataset]) -> None:
    needs = [m for m in request.methods if METHODS[m].needs_attributes]
    lacking = [d.spec.name for d in datasets if not d.has_attributes]
    if needs and lacking:
        raise UsageError(f"method(s) {', '.join(needs)} need an attributes file, which dataset(s) {', '.join(lacking)} lack",
                         "pass --attributes (or put attributes.json beside the images), or choose other --methods")


def _support_hash(records: list) -> str:
    """A short, path-free digest of the drawn support set (shows that seeds draw different sets)."""
    import hashlib

    names = sorted(f"{r.label}/{r.path.name}/{r.path.parent.name}" for r in records)
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()[:12]


def _job_result(job: Job, job_hash: str, dataset: LoadedDataset, inputs: JobInputs | None, output, rank: int,
                device: str) -> dict[str, Any]:
    from biomedvr_cli.method.metrics import compute_metrics

    probs = torch.softmax(output.logits.float(), dim=1).numpy()
    metrics = compute_metrics(output.labels.numpy(), probs, dataset.classes)
    return {
        "dataset": job.dataset, "method": job.method, "shots": job.shots, "seed": job.seed,
        "settings_hash": job_hash,
        "metrics": {k: metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auroc_ovr", "ece", "nll")},
        "confusion_matrix": metrics["confusion_matrix"],
        "fit_seconds": round(output.fit_seconds, 4),
        "selection": output.selection,
        "selected_epoch": output.selected_epoch,
        "val_accuracy": output.val_accuracy,
        "support_set": _support_hash(inputs.train) if inputs else None,
        "train_images": len(inputs.train) if inputs else 0,
        "val_images": len(inputs.val) if inputs else 0,
        "test_images": int(output.labels.numel()),
        "device": device,
        "rank": rank,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_benchmark(
    request: BenchmarkRequest,
    *,
    dist: DistContext | None = None,
    on_job: Callable[[JobEvent], None] | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> BenchmarkOutcome | None:
    """Run (or resume) the sweep; rank 0 returns the merged outcome, other ranks return None."""
    from biomedvr_cli.backbones import load_backbone

    dist = dist or DistContext()
    if not request.datasets:
        raise UsageError("no dataset given", "pass IMAGES (with --test or a test split) or --suite FILE")
    check_unique_names(request.datasets)
    unknown = [m for m in request.methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)}", "see --list-methods")
    if request.val_shots is not None and request.val_shots < 0:
        raise UsageError("--val-shots must be 0 or more", "pass 0 to train without validation (last epoch kept)")
    datasets = {spec.name: load_dataset(spec, notify=notify if dist.is_main else (lambda m: None), decode=request.decode)
                for spec in request.datasets}
    _check_methods(request, list(datasets.values()))
    backbone = load_backbone(request.backbone, device=rank_device(dist, request.device), allow_download=request.allow_download)

    shot_free = {m for m in request.methods if METHODS[m].shot_free}
    jobs = make_jobs(request.datasets, request.methods, request.shots, request.seeds, shot_free)
    signatures = {m: method_signature(METHODS[m], request.overrides) for m in request.methods}

    def job_hash(job: Job) -> str:
        return settings_hash({"dataset": datasets[job.dataset].fingerprint, "backbone": backbone.fingerprint,
                              "method": signatures[job.method], "shots": job.shots, "seed": job.seed,
                              "val_shots": request.val_shots, "allow_fewer": request.allow_fewer})

    store = JobStore(request.out)
    request.out.mkdir(parents=True, exist_ok=True)
    # Jobs differ in cost by orders of magnitude (zero-shot vs the paper recipe), so they are
    # spread over the ranks by estimated cost; results are merged by job key below.
    costs = [estimated_cost(METHODS[j.method], request.overrides, shots=j.shots,
                            classes=len(datasets[j.dataset].classes),
                            val_per_class=default_val_shots(j.shots) if request.val_shots is None else request.val_shots,
                            test_images=len(datasets[j.dataset].test)) for j in jobs]
    mine = dist.shard_by_cost(jobs, costs)
    results: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    text_cache: dict = {}
    ran = skipped = 0
    for n, job in enumerate(mine, 1):
        expected = job_hash(job)
        stored = store.done(job, expected, force=request.force)
        if stored is not None:
            results.append(stored)
            skipped += 1
            if on_job:
                on_job(JobEvent(job, n, len(mine), "skipped", accuracy=stored["metrics"]["accuracy"]))
            continue
        dataset = datasets[job.dataset]
        start = time.perf_counter()
        try:
            if job.method in shot_free:
                inputs = JobInputs(dataset, backbone, [], [], 0, 0, request.overrides, text_cache)
            else:
                split = sample_few_shot(dataset.pool, dataset.classes, job.shots, seed=job.seed,
                                        val_shots=request.val_shots, allow_fewer=request.allow_fewer)
                inputs = JobInputs(dataset, backbone, split.train, split.val, job.shots, job.seed, request.overrides,
                                   text_cache)
            output = run_method(job.method, inputs)
            result = _job_result(job, expected, dataset, inputs if job.method not in shot_free else None, output,
                                 dist.rank, backbone.device.type)
        except BiomedVRError as exc:
            failed.append({**job.to_dict(), "error": exc.one_line(), "exit_code": exc.exit_code})
            if on_job:
                on_job(JobEvent(job, n, len(mine), "failed", time.perf_counter() - start, error=exc.one_line()))
            continue
        store.save(job, result)
        results.append(result)
        ran += 1
        if on_job:
            on_job(JobEvent(job, n, len(mine), "done", time.perf_counter() - start, result["metrics"]["accuracy"]))

    gathered = dist.gather({"results": results, "failed": failed, "ran": ran, "skipped": skipped})
    if not dist.is_main:
        return None
    assert gathered is not None
    by_key: dict[str, dict[str, Any]] = {}
    all_failed: list[dict[str, Any]] = []
    ran = skipped = 0
    for part in gathered:
        for r in part["results"]:
            by_key[Job(r["dataset"], r["method"], int(r["shots"]), int(r["seed"])).key] = r
        all_failed.extend(part["failed"])
        ran += part["ran"]
        skipped += part["skipped"]
    merged: list[dict[str, Any]] = []
    for job in jobs:  # the original job order, whatever the ranks
        r = by_key.get(job.key)
        if r is None:
            continue
        on_disk = store.load(job)
        if on_disk is None or on_disk.get("settings_hash") != r["settings_hash"]:
            store.save(job, {k: v for k, v in r.items() if k != "store_version"})  # rank on another node
        merged.append({k: v for k, v in r.items() if k != "store_version"})
    order = list(dict.fromkeys((j.dataset, j.method, j.shots) for j in jobs))
    rows = summarize(merged, order)
    document = {
        "benchmark": {
            "biomedvr_version": __version__,
            "backbone": backbone.label,
            "backbone_fingerprint": backbone.fingerprint,
            "datasets": [spec.describe() | {"classes": datasets[spec.name].classes,
                                            "test_images": len(datasets[spec.name].test),
                                            "attributes": datasets[spec.name].attributes.source}
                         for spec in request.datasets],
            "methods": {m: METHODS[m].description for m in request.methods},
            "method_settings": signatures,
            "shots": request.shots,
            "seeds": request.seeds,
            "seed_meaning": "the seed draws the support and validation sets and initialises training",
            "selection": SELECTION,
            "val_shots": request.val_shots if request.val_shots is not None else "min(shots, 4) per class",
            "std": "sample standard deviation over seeds (ddof=1)",
            "world_size": dist.world,
            "jobs": len(jobs),
        },
        "summary": rows,
        "jobs": merged,
        "failed": all_failed,
    }
    outputs = write_reports(request.out, rows, merged, document)
    return BenchmarkOutcome(document, rows, merged, all_failed, outputs, ran, skipped)
