"""Mismatches between the docs and what the tool does, found by running the docs (session 14)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from biomedvr_cli.method.conformal import assured_level, level_text
from biomedvr_cli.pipeline.trust import sets_level


@pytest.mark.parametrize(("images", "shown"), [(60, "0.950"), (72, "0.945"), (120, "0.933")])
def test_the_assured_level_in_eval_and_predict_notes_is_rounded_down_as_info_shows_it(images: int, shown: str) -> None:
    predictor = SimpleNamespace(calibration=SimpleNamespace(conformal=SimpleNamespace(images=images)))
    level, warnings, note = sets_level(predictor, 0.9, 0.9)
    assert not warnings and level == assured_level(images, 0.9, 0.9)
    assert level_text(level, images) == shown and f"built at level {shown}:" in note
    # The shown level builds the same sets: the same calibration score rank as the exact level.
    assert math.ceil(float(shown) * (images + 1) - 1e-9) == math.ceil(level * (images + 1) - 1e-9)
