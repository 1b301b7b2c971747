"""``benchmark`` as a library call: run every (dataset, method, shots, seed) job, store, merge, report.

Per job: draw the support and validation sets with the job's seed (``sample_few_shot``),
fit the method (selection on validation only), score the fixed test set, compute the
metrics (``evaluation.compute_metrics``), and write the job's JSON file at once. Under
``torchrun`` each rank runs its shard; rank 0 gathers every result, writes any it does
not have on its disk (nodes without a shared file system), and writes the reports.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from biomedvr_cli import __version__
from biomedvr_cli.atomic import refuse_folder_with_inputs, reserve_output
from biomedvr_cli.benchmark.datasets import LoadedDataset, load_dataset
from biomedvr_cli.distributed import DistContext, rank_device
from biomedvr_cli.method.metrics import SCALAR_METRICS
from biomedvr_cli.benchmark.methods import METHODS, JobInputs, Overrides, estimated_cost, method_signature, run_method
from biomedvr_cli.benchmark.protocol import DatasetSpec, Job, check_unique_names, is_task_file, make_jobs
from biomedvr_cli.benchmark.report import check_out_folder, summarize, write_reports
from biomedvr_cli.benchmark.store import JobStore, settings_hash
from biomedvr_cli.data import DecodeOptions, sample_few_shot
from biomedvr_cli.data.sampling import default_val_shots
from biomedvr_cli.errors import BiomedVRError, InvalidInputError, UsageError

if TYPE_CHECKING:  # the loader pulls in open_clip; it is imported when a backbone is really loaded
    from biomedvr_cli.backbones.loader import Backbone

SELECTION = ("validation split drawn beside the support set (never the test set); every trained method ends "
             "fitted on the same labelled images, support + validation (fitted_images; docs/benchmark.md)")
VOLATILE_KEYS = ("fit_seconds", "vr_seconds", "rank", "finished_at")  # differ between otherwise identical runs


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
    suite: Path | None = None  # the suite file the datasets came from: an input no report may replace


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
        "metrics": {k: metrics[k] for k in SCALAR_METRICS},
        "confusion_matrix": metrics["confusion_matrix"],
        "fit_seconds": round(output.fit_seconds, 4),
        "selection": output.selection,
        "selected_epoch": output.selected_epoch,
        "val_accuracy": output.val_accuracy,
        "fitted_images": output.fitted_images,
        "start_accuracy": output.start_accuracy,
        # what the VR stage did; its time apart, with the other timings
        "vr": None if output.vr is None else {k: v for k, v in output.vr.items() if k != "seconds"},
        "vr_seconds": None if output.vr is None else output.vr["seconds"],
        "support_set": _support_hash(inputs.train) if inputs else None,
        "train_images": len(inputs.train) if inputs else 0,
        "val_images": len(inputs.val) if inputs else 0,
        "test_images": int(output.labels.numel()),
        "device": device,
        "rank": rank,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@dataclass
class _Sweep:
    """What every job of one run shares: the request, loaded datasets, backbone, job list and store."""

    request: BenchmarkRequest
    datasets: dict[str, LoadedDataset]
    backbone: Backbone
    jobs: list[Job]
    shot_free: set[str]
    signatures: dict[str, dict[str, Any]]
    store: JobStore
    text_cache: dict = field(default_factory=dict)  # class-text features, shared by the jobs of this process

    def job_hash(self, job: Job) -> str:
        """The hash of everything that changes ``job``'s result (what the store compares on resume)."""
        parts = {"dataset": self.datasets[job.dataset].fingerprint, "backbone": self.backbone.fingerprint,
                 "method": self.signatures[job.method], "shots": job.shots, "seed": job.seed,
                 "val_shots": self.request.val_shots, "allow_fewer": self.request.allow_fewer}
        if self.request.decode != DecodeOptions():  # only when set, so that results stored before stay valid
            parts["decode"] = asdict(self.request.decode)
        return settings_hash(parts)


@dataclass
class _ShardResult:
    """One rank's share of the sweep, in the form sent to rank 0."""

    results: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0


def _check_request(request: BenchmarkRequest) -> None:
    """Refuse a request that cannot run, before any dataset or backbone is loaded."""
    if not request.datasets:
        raise UsageError("no dataset given", "pass IMAGES (with --test or a test split) or --suite FILE")
    check_unique_names(request.datasets)
    unknown = [m for m in request.methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)}", "see --list-methods")
    if request.val_shots is not None and request.val_shots < 0:
        raise UsageError("--val-shots must be 0 or more", "pass 0 to train without validation (last epoch kept)")


def _prepare(request: BenchmarkRequest, dist: DistContext, notify: Callable[[str], None]) -> _Sweep:
    """Load the datasets and the backbone, list the jobs and open the store (creating ``request.out``)."""
    from biomedvr_cli.backbones import load_backbone

    datasets = {spec.name: load_dataset(spec, notify=notify if dist.is_main else (lambda m: None), decode=request.decode)
                for spec in request.datasets}
    _check_methods(request, list(datasets.values()))
    if dist.is_main:
        refuse_folder_with_inputs(request.out, _image_folders(list(datasets.values())), [], option="--out")
    backbone = load_backbone(request.backbone, device=rank_device(dist, request.device), allow_download=request.allow_download)
    shot_free = {m for m in request.methods if METHODS[m].shot_free}
    jobs = make_jobs(request.datasets, request.methods, request.shots, request.seeds, shot_free)
    signatures = {m: method_signature(METHODS[m], request.overrides) for m in request.methods}
    store = JobStore(request.out)
    request.out.mkdir(parents=True, exist_ok=True)
    return _Sweep(request, datasets, backbone, jobs, shot_free, signatures, store)


def _image_folders(datasets: list[LoadedDataset]) -> list[Path]:
    """The folders a manifest's images are in, and the parents of class folders (``data/test`` for
    ``data/test/nevus/1.png``): a folder made there would be read as one more class by a folder scan.
    A manifest's own folder is left out (the project folder, where reports naturally go: nothing scans
    it while the manifest is the dataset); folders given as IMAGES are checked before this."""
    folders: set[Path] = set()
    for dataset in datasets:
        spec = dataset.spec
        if spec.is_sandbox:  # generated in memory; their paths are names only
            continue
        manifests = {p.resolve().parent for p in (spec.images, spec.test) if p is not None and not p.is_dir()}
        found: set[Path] = set()
        for record in (*dataset.pool, *dataset.test):
            folder = record.path.parent
            found.add(folder)
            if record.label is not None and folder.name == record.label:
                found.add(folder.parent)
        folders.update(f for f in found if f.resolve() not in manifests)  # a few folders, resolved once each
    return sorted(folders)


def _readable(dataset: LoadedDataset, records: list, what: str, size: int) -> None:
    """Refuse (exit 3, this job only) a set of which no image can be read: no method can score or fit on none."""
    if records and not dataset.readable(records, size):
        raise InvalidInputError(f"{dataset.spec.name}: none of the {len(records)} {what} images could be read",
                                "check those files (damaged, or larger than --max-pixels allows)")


def _draw_readable(dataset: LoadedDataset, job: Job, request, size: int):
    """The job's support and validation draw from readable images only, as ``fit`` draws: an unreadable
    pick is left out of the pool and the seed draws again, so a benchmark cell is the fit it stands for
    (never a fit without one class's images). Too few readable images is this job's error (exit 3)."""
    pool, unreadable = list(dataset.pool), []
    while True:
        split = sample_few_shot(pool, dataset.classes, job.shots, seed=job.seed, val_shots=request.val_shots,
                                allow_fewer=request.allow_fewer, unreadable=unreadable)
        bad = {str(r.path) for r in split.train + split.val if not dataset.readable([r], size)}
        if not bad:
            return split
        unreadable += [r for r in pool if str(r.path) in bad]
        pool = [r for r in pool if str(r.path) not in bad]


def _my_jobs(sweep: _Sweep, dist: DistContext) -> list[Job]:
    """This rank's share of the jobs."""
    request = sweep.request
    # Jobs differ in cost by orders of magnitude (zero-shot vs the paper recipe), so they are
    # spread over the ranks by estimated cost; results are merged by job key in _merge.
    costs = [estimated_cost(METHODS[j.method], request.overrides, shots=j.shots,
                            classes=len(sweep.datasets[j.dataset].classes),
                            val_per_class=default_val_shots(j.shots) if request.val_shots is None else request.val_shots,
                            test_images=len(sweep.datasets[j.dataset].test)) for j in sweep.jobs]
    return dist.shard_by_cost(sweep.jobs, costs)


def _run_job(sweep: _Sweep, job: Job, expected: str, rank: int) -> dict[str, Any]:
    """Draw the support set, fit and score one job; its result record (not yet stored)."""
    request, dataset = sweep.request, sweep.datasets[job.dataset]
    _readable(dataset, dataset.test, "test", sweep.backbone.image_size)
    if job.method in sweep.shot_free:
        inputs = JobInputs(dataset, sweep.backbone, [], [], 0, 0, request.overrides, sweep.text_cache)
    else:
        split = _draw_readable(dataset, job, request, sweep.backbone.image_size)
        inputs = JobInputs(dataset, sweep.backbone, split.train, split.val, job.shots, job.seed, request.overrides,
                           sweep.text_cache)
    output = run_method(job.method, inputs)
    return _job_result(job, expected, dataset, inputs if job.method not in sweep.shot_free else None, output,
                       rank, sweep.backbone.device.type)


def _run_shard(sweep: _Sweep, mine: list[Job], rank: int,
               on_job: Callable[[JobEvent], None] | None) -> _ShardResult:
    """Run (or take from the store) each of ``mine``; a failing job is recorded and the others go on."""
    shard = _ShardResult()
    for n, job in enumerate(mine, 1):
        expected = sweep.job_hash(job)
        stored = sweep.store.done(job, expected, force=sweep.request.force)
        if stored is not None:
            shard.results.append(stored)
            shard.skipped += 1
            if on_job:
                on_job(JobEvent(job, n, len(mine), "skipped", accuracy=stored["metrics"]["accuracy"]))
            continue
        start = time.perf_counter()
        try:
            result = _run_job(sweep, job, expected, rank)
        except BiomedVRError as exc:
            shard.failed.append({**job.to_dict(), "error": exc.one_line(), "exit_code": exc.exit_code})
            if on_job:
                on_job(JobEvent(job, n, len(mine), "failed", time.perf_counter() - start, error=exc.one_line()))
            continue
        sweep.store.save(job, result)
        shard.results.append(result)
        shard.ran += 1
        if on_job:
            on_job(JobEvent(job, n, len(mine), "done", time.perf_counter() - start, result["metrics"]["accuracy"]))
    return shard


def _merge(sweep: _Sweep, gathered: list[dict[str, Any]]) -> _ShardResult:
    """Rank 0: every rank's results in job order (stored here too when missing) and the summed counts."""
    by_key: dict[str, dict[str, Any]] = {}
    totals = _ShardResult()
    for part in gathered:
        for r in part["results"]:
            by_key[Job(r["dataset"], r["method"], int(r["shots"]), int(r["seed"])).key] = r
        totals.failed.extend(part["failed"])
        totals.ran += part["ran"]
        totals.skipped += part["skipped"]
    for job in sweep.jobs:  # the original job order, whatever the ranks
        r = by_key.get(job.key)
        if r is None:
            continue
        on_disk = sweep.store.load(job)
        if on_disk is None or on_disk.get("settings_hash") != r["settings_hash"]:
            sweep.store.save(job, {k: v for k, v in r.items() if k != "store_version"})  # rank on another node
        totals.results.append({k: v for k, v in r.items() if k != "store_version"})
    return totals


def _document(sweep: _Sweep, world: int, rows: list[dict[str, Any]], merged: list[dict[str, Any]],
              failed: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary.json document: the run's settings, the summary rows, every job and the failures."""
    request, datasets, backbone = sweep.request, sweep.datasets, sweep.backbone
    return {
        "benchmark": {
            "biomedvr_version": __version__,
            "backbone": backbone.label,
            "backbone_fingerprint": backbone.fingerprint,
            "datasets": [spec.describe() | {"classes": datasets[spec.name].classes,
                                            "test_images": len(datasets[spec.name].test),
                                            "attributes": datasets[spec.name].attributes.source}
                         for spec in request.datasets],
            "methods": {m: METHODS[m].description for m in request.methods},
            "method_settings": sweep.signatures,
            "shots": request.shots,
            "seeds": request.seeds,
            "seed_meaning": "the seed draws the support and validation sets and initialises training",
            "selection": SELECTION,
            "val_shots": request.val_shots if request.val_shots is not None else "min(shots, 4) per class",
            "std": "sample standard deviation over seeds (ddof=1)",
            "world_size": world,
            "jobs": len(sweep.jobs),
        },
        "summary": rows,
        "jobs": merged,
        "failed": failed,
    }


def run_benchmark(
    request: BenchmarkRequest,
    *,
    dist: DistContext | None = None,
    on_job: Callable[[JobEvent], None] | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> BenchmarkOutcome | None:
    """Run (or resume) the sweep; rank 0 returns the merged outcome, other ranks return None."""
    dist = dist or DistContext()
    _check_request(request)
    if dist.is_main:
        tasks = [Path(s.sandbox_task) for s in request.datasets if s.sandbox_task and is_task_file(s.sandbox_task)]
        given = [p for s in request.datasets for p in (s.images, s.test, s.attributes) if p is not None] + tasks
        given += [request.suite] if request.suite is not None else []
        check_out_folder(request.out, [p for p in given if p.is_dir()], [p for p in given if p.is_file()])
    # Rank 0 holds the report for the whole run (a second run into the same --out fails at once). If
    # the run stops (error, Ctrl-C, SIGTERM) the finished jobs stay in jobs/, resumable; a folder it
    # created and left without results is removed.
    held = reserve_output(request.out / "summary.json", force=True) if dist.is_main else contextlib.nullcontext()
    with held:
        sweep = _prepare(request, dist, notify)
        try:
            shard = _run_shard(sweep, _my_jobs(sweep, dist), dist.rank, on_job)
        finally:
            sweep.store.drop_if_empty()
        gathered = dist.gather({"results": shard.results, "failed": shard.failed, "ran": shard.ran,
                                "skipped": shard.skipped})
        if not dist.is_main:
            return None
        assert gathered is not None
        return _finish(request, sweep, dist, gathered)


def _finish(request: BenchmarkRequest, sweep: _Sweep, dist: DistContext,
            gathered: list[dict[str, Any]]) -> BenchmarkOutcome:
    """Rank 0: merge every rank's results, summarise them and write the reports."""
    merged = _merge(sweep, gathered)
    order = list(dict.fromkeys((j.dataset, j.method, j.shots) for j in sweep.jobs))
    rows = summarize(merged.results, order)
    document = _document(sweep, dist.world, rows, merged.results, merged.failed)
    outputs = write_reports(request.out, rows, merged.results, document)
    return BenchmarkOutcome(document, rows, merged.results, merged.failed, outputs, merged.ran, merged.skipped)
