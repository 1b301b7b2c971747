"""Scale-out: two CPU processes under torchrun (gloo, loopback) give the single-process results."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.distributed import DistContext, merge_shards
from biomedvr_cli.benchmark.runner import VOLATILE_KEYS
from tests.conftest import TINY_CONFIG, make_color_tree, write_color_attributes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_backbone(tiny_backbone_spec: str, tmp_path_factory) -> str:
    """The tiny backbone as a local-dir folder, loadable from a fresh process."""
    folder = tmp_path_factory.mktemp("tiny-local")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG, "preprocess_cfg": {}}))
    (folder / "open_clip_model.safetensors").write_bytes(Path(tiny_backbone_spec.split(":", 1)[1]).read_bytes())
    return f"local-dir:{folder}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = make_color_tree(tmp_path_factory.mktemp("dist") / "colours", per_class=5, size=32, splits=("train", "test"))
    write_color_attributes(root / "attributes.json")
    return root


def _env() -> dict[str, str]:
    # Same thread count in both runs, so float reductions happen in the same order.
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "biomedvr_cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=240)


def _single(args: list[str]):
    """The reference: one process (this one), one intra-op thread like each torchrun worker."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return CliRunner().invoke(app, args)
    finally:
        torch.set_num_threads(saved)


def _stable(job: dict) -> dict:
    return {k: v for k, v in job.items() if k not in VOLATILE_KEYS}


def test_shard_and_merge_round_trip() -> None:
    items = list(range(11))
    parts = [DistContext(rank=r, world=3).shard(items) for r in range(3)]
    assert parts[1] == [1, 4, 7, 10]
    assert merge_shards(parts) == items
    parts = [DistContext(rank=r, world=2).shard(items, chunk=4) for r in range(2)]
    assert parts[0] == [0, 1, 2, 3, 8, 9, 10] and merge_shards(parts, chunk=4) == items
    assert DistContext().shard(items) == items and DistContext().gather("x") == ["x"]


def test_cost_balanced_shards_cover_every_item_once_and_even_out_the_load() -> None:
    from biomedvr_cli.distributed import balanced_assignment

    # A skewed list where i % world puts every long item on rank 0.
    costs = [100.0, 1.0, 100.0, 1.0, 100.0, 1.0, 100.0, 1.0]
    items = [f"job{i}" for i in range(len(costs))]
    parts = [DistContext(rank=r, world=2).shard_by_cost(items, costs) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(items)
    assert all(part == [i for i in items if i in part] for part in parts)  # original order kept
    loads = [sum(costs[items.index(i)] for i in part) for part in parts]
    modulo = [sum(costs[i] for i in range(len(costs)) if i % 2 == r) for r in range(2)]
    assert max(loads) == 202.0 < max(modulo) == 400.0
    assert balanced_assignment(costs, 2) == balanced_assignment(list(costs), 2)  # same on every rank
    assert balanced_assignment([5.0, 5.0, 5.0], 1) == [0, 0, 0] and balanced_assignment([], 3) == []
    assert DistContext().shard_by_cost(items, costs) == items


def test_job_cost_estimates_order_methods_by_their_work() -> None:
    from biomedvr_cli.benchmark.methods import METHODS, Overrides, estimated_cost

    def cost(method: str, shots: int = 16, overrides: Overrides | None = None) -> float:
        return estimated_cost(METHODS[method], overrides or Overrides(), shots=shots, classes=5, val_per_class=4,
                              test_images=400)

    assert cost("zs-attributes") < cost("linear-probe") < cost("biomedvr") < cost("biomedvr-paper")
    assert cost("biomedvr-no-negative") < cost("biomedvr")  # one VR view instead of two
    assert cost("biomedvr", shots=1) < cost("biomedvr", shots=4) < cost("biomedvr", shots=16)
    assert cost("biomedvr", overrides=Overrides(epoch_scale=0.1)) < cost("biomedvr")
    assert cost("coop", shots=1) < cost("coop", shots=16)


@pytest.mark.slow  # two torchrun processes
def test_benchmark_two_ranks_equal_one_process(tree: Path, local_backbone: str, tmp_path: Path) -> None:
    args = ["benchmark", str(tree), "--backbone", local_backbone, "--methods",
            "zs-classname,linear-probe,coop,biomedvr-vr-mask", "--shots", "1", "--seeds", "2",
            "--epochs", "1", "--device", "cpu", "--json"]
    single = _single([*args, "--out", str(tmp_path / "one")])
    assert single.exit_code == 0, single.stderr[-3000:]
    multi = _torchrun([*args, "--out", str(tmp_path / "two")])
    assert multi.returncode == 0, multi.stderr[-3000:]
    one, two = json.loads(single.stdout), json.loads(multi.stdout)  # only rank 0 prints: one JSON document
    assert two["benchmark"]["world_size"] == 2 and len(two["jobs"]) == 7
    assert {j["rank"] for j in two["jobs"]} == {0, 1}
    assert [_stable(j) for j in two["jobs"]] == [_stable(j) for j in one["jobs"]]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "fit_seconds"} for r in rows]  # noqa: E731
    assert strip(two["summary"]) == strip(one["summary"])
    assert sorted(p.name for p in (tmp_path / "two" / "jobs").iterdir()) == sorted(p.name for p in (tmp_path / "one" / "jobs").iterdir())
    assert (tmp_path / "two" / "summary.csv").is_file() and (tmp_path / "two" / "accuracy_vs_shots.png").is_file()


@pytest.mark.slow  # two torchrun processes
def test_predict_two_ranks_keep_input_order(tree: Path, local_backbone: str, tmp_path: Path) -> None:
    adapter = tmp_path / "a.safetensors"
    fit = CliRunner().invoke(app, ["fit", str(tree), "--shots", "2", "--backbone", local_backbone, "--out", str(adapter),
                                   "--epochs", "1", "--device", "cpu"])
    assert fit.exit_code == 0, fit.stderr
    args = ["predict", str(tree / "test"), "--adapter", str(adapter), "--backbone", local_backbone, "--format", "csv",
            "--batch-size", "4", "--device", "cpu"]
    single = _single([*args, "--out", str(tmp_path / "one.csv")])
    assert single.exit_code == 0, single.stderr[-3000:]
    multi = _torchrun([*args, "--out", str(tmp_path / "two.csv")])
    assert multi.returncode == 0, multi.stderr[-3000:]
    one = (tmp_path / "one.csv").read_text()
    assert (tmp_path / "two.csv").read_text() == one
    rows = list(csv.DictReader(io.StringIO(one)))
    assert len(rows) == 15 and rows == sorted(rows, key=lambda r: r["file"])  # input order (sorted folder walk)
