"""Build hook: ship the top-level ``prompts/`` folder inside the wheel.

The prompt templates live at the top of the source tree (the project layout is fixed), which
an editable install reads in place. A regular wheel holds only packages, so the build copies
``prompts/`` to ``biomedvr_cli/_prompts/`` in the built package, where
``biomedvr_cli.attributes.prompts`` looks first. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithPrompts(build_py):
    """build_py that also copies prompts/ into the built package (not for editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the source tree's prompts/ is read in place
        shutil.copytree(ROOT / "prompts", Path(self.build_lib) / "biomedvr_cli" / "_prompts", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithPrompts})
