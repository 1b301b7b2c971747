"""`benchmark` under the hostile review of session 15: what it reproduced, fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from tests.conftest import make_color_tree, write_color_attributes

runner = CliRunner()


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = make_color_tree(tmp_path / "colours", per_class=5, size=32, splits=("train", "test"))
    write_color_attributes(root / "attributes.json")
    return root


def test_an_unreadable_image_the_seed_draws_is_replaced_as_fit_replaces_it(tree: Path, tiny_backbone_spec: str) -> None:
    broken = sorted((tree / "train" / "alpha cell").glob("*.png"))[:3]
    for png in broken:  # three of alpha's five training images: every seed's draw of 1 + 1 meets one
        png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    out = tree.parent / "out"
    result = runner.invoke(app, ["benchmark", str(tree), "--backbone", tiny_backbone_spec, "--methods",
                                 "linear-probe,biomedvr", "--shots", "1", "--seeds", "2", "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    jobs = [json.loads(p.read_text()) for p in sorted((out / "jobs").rglob("*.json"))]
    assert len(jobs) == 4
    assert all(job["fitted_images"] == 6 for job in jobs)  # 1 + 1 a class, every class there


def test_the_draw_gives_up_on_a_class_with_too_few_readable_images_in_that_job_alone(
        tree: Path, tiny_backbone_spec: str) -> None:
    for png in sorted((tree / "train" / "alpha cell").glob("*.png"))[:4]:
        png.write_bytes(b"not an image")
    result = runner.invoke(app, ["benchmark", str(tree), "--backbone", tiny_backbone_spec, "--methods",
                                 "zs-classname,linear-probe", "--shots", "1", "--seeds", "1", "--out", str(tree.parent / "o")])
    assert result.exit_code == 3, result.stderr
    assert "alpha cell" in result.stderr and "could not be read" in result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    assert (tree.parent / "o" / "summary.json").is_file()  # the zero-shot job ran and the reports were written


def test_reports_interrupted_while_made_leave_the_earlier_set_whole(tree: Path, tiny_backbone_spec: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.benchmark import report

    out = tree.parent / "out"
    args = ["benchmark", str(tree), "--backbone", tiny_backbone_spec, "--methods", "zs-classname,linear-probe",
            "--shots", "1", "--out", str(out)]
    assert runner.invoke(app, [*args, "--seeds", "1"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert "accuracy_vs_shots.png" in before

    class Interrupted:  # Ctrl-C while the plot is drawn, after the summaries are made
        def savefig(self, *args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(report, "accuracy_figure", lambda rows: Interrupted())
    result = runner.invoke(app, [*args, "--seeds", "2"])
    assert result.exit_code == 130, result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # no new report, no temporary file
