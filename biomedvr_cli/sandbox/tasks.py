"""Downstream tasks as data: class names defined as distributions over attribute values.

A task file (JSON) names its classes, gives each class a weighted choice of values per
attribute family (families it omits vary uniformly: nuisance), lists designed confusion
pairs and a default domain shift. The class names never appear in captions, so the
pretrained model has never seen them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biomedvr_cli.attributes.textfile import read_user_json
from biomedvr_cli.errors import InvalidInputError
from biomedvr_cli.sandbox import TASKS_DIR
from biomedvr_cli.sandbox.draw import FAMILY_NAMES, IMAGE_SIZE, render_batch
from biomedvr_cli.sandbox.shifts import SHIFTS, apply_shift
from biomedvr_cli.sandbox.vocabulary import FAMILIES
from biomedvr_cli.sandbox.world import fix_conditionals

TASK_SCHEMA_VERSION = 1
_CHUNK = 256


@dataclass
class TaskSpec:
    """One task: classes as per-family value weights, confusion pairs, default shift."""

    name: str
    description: str
    classes: dict[str, dict[str, dict[str, float]]]
    confusion_pairs: list[tuple[str, str]] = field(default_factory=list)
    default_shift: str = "none"
    image_size: int = IMAGE_SIZE
    source: Path | None = None

    @property
    def class_names(self) -> list[str]:
        """Class names in file order (the label order everywhere)."""
        return list(self.classes)

    def attributes_path(self) -> Path | None:
        """The hand-written attributes file next to the task file, if there is one."""
        if self.source is None:
            return None
        p = self.source.with_name(self.source.name.removesuffix(".json") + ".attributes.json")
        return p if p.is_file() else None


def parse_shift(shift: str) -> list[str]:
    """``stain+blur`` -> ["stain", "blur"]; each part must be a known shift."""
    parts = [p.strip() for p in shift.split("+") if p.strip()]
    bad = [p for p in parts if p not in SHIFTS]
    if not parts or bad:
        raise InvalidInputError(
            f"unknown shift {shift!r}", f"use one of {', '.join(SHIFTS)} (or several joined with '+')"
        )
    return parts


def _validate(doc: Any, where: str) -> TaskSpec:
    """Check a task document and build the TaskSpec; every problem names its place."""
    def bad(msg: str, hint: str = "fix the task file") -> InvalidInputError:
        return InvalidInputError(f"{where}: {msg}", hint)

    if not isinstance(doc, dict):
        raise bad("a task file must be a JSON object")
    if doc.get("schema_version") != TASK_SCHEMA_VERSION:
        raise bad(f"schema_version must be {TASK_SCHEMA_VERSION}")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise bad("'name' must be a non-empty string")
    classes_in = doc.get("classes")
    if not isinstance(classes_in, dict) or len(classes_in) < 2:
        raise bad("'classes' must map at least two class names to attribute choices")
    classes: dict[str, dict[str, dict[str, float]]] = {}
    for cname, spec in classes_in.items():
        if not isinstance(spec, dict):
            raise bad(f"class {cname!r} must map attribute families to values")
        cls: dict[str, dict[str, float]] = {}
        for fam, choice in spec.items():
            if fam not in FAMILIES:
                raise bad(f"class {cname!r}: unknown attribute {fam!r}", f"attributes are: {', '.join(FAMILIES)}")
            weights = {v: 1.0 for v in choice} if isinstance(choice, list) else ({choice: 1.0} if isinstance(choice, str) else choice)
            if not isinstance(weights, dict) or not weights:
                raise bad(f"class {cname!r}: {fam!r} must be a value, a list of values or {{value: weight}}")
            for v, w in weights.items():
                if v not in FAMILIES[fam]:
                    raise bad(
                        f"class {cname!r}: unknown value {v!r} for attribute {fam!r}",
                        f"allowed values for {fam}: {', '.join(FAMILIES[fam])}",
                    )
                if not isinstance(w, (int, float)) or w <= 0:
                    raise bad(f"class {cname!r}: weight of {fam}={v!r} must be a positive number")
            cls[fam] = {v: float(w) for v, w in weights.items()}
        classes[cname] = cls
    pairs = []
    for pair in doc.get("confusion_pairs", []):
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in classes for p in pair)):
            raise bad(f"confusion pair {pair!r} must name two classes of the task")
        pairs.append((pair[0], pair[1]))
    shift = doc.get("default_shift", "none")
    try:
        parse_shift(shift)
    except InvalidInputError as exc:
        raise bad(exc.message, exc.hint) from None
    size = doc.get("image_size", IMAGE_SIZE)
    if not isinstance(size, int) or not 32 <= size <= 256:
        raise bad("image_size must be an integer between 32 and 256")
    return TaskSpec(name, str(doc.get("description", "")), classes, pairs, shift, size)


def load_task(name_or_path: str | Path) -> TaskSpec:
    """A built-in task by name, or a task file by path."""
    p = Path(name_or_path)
    if not p.suffix == ".json":
        builtin = TASKS_DIR / f"{name_or_path}.json"
        if not builtin.is_file():
            names = ", ".join(t.name for t in list_tasks())
            raise InvalidInputError(f"no built-in task named {name_or_path!r}", f"built-in tasks: {names}; or pass --task-file")
        p = builtin
    doc = read_user_json(p, missing_hint="check the --task-file path", fix_hint="fix the task file")
    spec = _validate(doc, p.name)
    spec.source = p
    return spec


def list_tasks() -> list[TaskSpec]:
    """The built-in tasks, sorted by name."""
    return [load_task(p) for p in sorted(TASKS_DIR.glob("*.json")) if not p.name.endswith(".attributes.json")]


def sample_class_attrs(task: TaskSpec, class_index: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Attribute rows [n, F] for one class: its weighted choices, uniform for omitted families."""
    spec = task.classes[task.class_names[class_index]]
    cols = []
    for fam in FAMILY_NAMES:
        values = FAMILIES[fam]
        if fam in spec:
            w = np.array([spec[fam].get(v, 0.0) for v in values])
            cols.append(rng.choice(len(values), size=n, p=w / w.sum()))
        else:
            cols.append(rng.integers(0, len(values), n))
    return fix_conditionals(np.stack(cols, axis=1).astype(np.int64))


def generate_task_arrays(
    task: TaskSpec, n_per_class: int, seed: int, shift: str = "none", *, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, S, S, 3] and labels int64 [N] (class order = task.class_names), in memory.

    ``shift`` is ``none``, a shift name, several joined with '+', or ``default`` (the task's).
    ``split`` seeds train and test differently so they never share images.
    """
    parts = parse_shift(task.default_shift if shift == "default" else shift)
    rng = np.random.default_rng([seed, {"train": 0, "test": 1}.get(split, 2), 0x5A])
    attrs = np.concatenate([sample_class_attrs(task, c, n_per_class, rng) for c in range(len(task.classes))])
    labels = np.repeat(np.arange(len(task.classes)), n_per_class)
    shift_rng = np.random.default_rng([seed, {"train": 0, "test": 1}.get(split, 2), 7])
    out = np.zeros((len(attrs), task.image_size, task.image_size, 3), np.uint8)
    for i in range(0, len(attrs), _CHUNK):  # chunks bound the renderer's memory
        images = render_batch(attrs[i : i + _CHUNK], rng, size=task.image_size)
        for part in parts:
            images = apply_shift(images, part, shift_rng)
        out[i : i + _CHUNK] = np.round(images * 255).astype(np.uint8)
    return out, labels
