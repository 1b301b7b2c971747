"""A built wheel carries everything a non-editable install needs at run time."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="setuptools is not installed")
def test_wheel_ships_prompt_templates_sandbox_weights_and_presets(tmp_path: Path) -> None:
    # Build from a copy: pip builds in the source folder and would leave build/ in the checkout.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                                                   "__pycache__", ".pytest_cache", "runs", "demo-run"))
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("biomedvr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in sorted((ROOT / "prompts" / "attributes-v1").iterdir()):
        assert f"biomedvr_cli/_prompts/attributes-v1/{template.name}" in names
    assert "biomedvr_cli/sandbox/model/sandbox.safetensors" in names
    assert "biomedvr_cli/sandbox/model/biomedvr-sandbox.json" in names
    assert "biomedvr_cli/backbones/presets/biomedclip.json" in names
    assert "biomedvr_cli/method/recipes/fast.json" in names
    assert not any(n.startswith(("tests/", "experiments/", "prompts/")) for n in names)


def test_packaged_prompts_are_preferred_over_the_source_tree() -> None:
    from biomedvr_cli.attributes import prompts

    expected = prompts._PACKAGED_PROMPTS if prompts._PACKAGED_PROMPTS.is_dir() else prompts._SOURCE_PROMPTS
    assert prompts.PROMPTS_DIR == expected
    assert prompts.load_prompts().version == prompts.PROMPT_VERSION


def test_declared_pydicom_range_is_the_one_the_decoder_needs() -> None:
    """data/dicom.py imports pydicom.pixels (new in 3.0) and pydicom's file-meta reader (private,
    checked on 3.x): the range must admit the installed version and neither 2.x nor 4.x."""
    tomllib = pytest.importorskip("tomllib")
    from importlib.metadata import version

    from packaging.requirements import Requirement

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(Requirement(d) for d in declared if Requirement(d).name == "pydicom").specifier
    assert spec.contains(version("pydicom"))
    assert not spec.contains("2.4.4") and not spec.contains("4.0.0")
    assert importlib.util.find_spec("pydicom.pixels") is not None
