"""Test setup: no network, no downloaded weights.

Offline flags are set before anything imports huggingface_hub or open_clip, so a test
that would download fails instead of reaching out.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("BIOMEDVR_CACHE_DIR", os.path.join(os.path.dirname(__file__), ".cache-never-used"))
os.environ.pop("BIOMEDVR_ALLOW_DOWNLOAD", None)
os.environ.pop("ANTHROPIC_API_KEY", None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture()
def shared_dir() -> Path:
    """The project's shared/ folder; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED
