"""Downstream tasks as data: class names defined as distributions over attribute values.

A task file (JSON) names its classes, gives each class a weighted choice of values per
attribute family (families it omits vary uniformly: nuisance), lists designed confusion
pairs and a default domain shift. The class names never appear in captions, so the
pretrained model has never seen them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biomedvr_cli.attributes.classlist import check_class_names
from biomedvr_cli.attributes.privacy import MAX_STORED_CLASS_NAME_CHARS, check_stored_text
from biomedvr_cli.attributes.schema import class_name_key
from biomedvr_cli.attributes.textfile import parse_user_json, read_user_text
from biomedvr_cli.data.labels import canonical_label
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


# A class name becomes a folder under train/ and test/, so it must be one safe folder name.
MAX_FOLDER_NAME_BYTES = 255
_CLASS_NAME_WHY = ("a task's class names become folder names and are stored in adapters fit on its images, "
                   "which must not hold patient data")
_RENAME = "rename the class in the task file to a plain name such as 'lymphocyte'"


def _folder_problem(name: str) -> str | None:
    """Why ``name`` cannot be one folder of its own inside OUT/train (None when it can)."""
    if not name:
        return "is empty"
    if "/" in name or "\\" in name:
        return "holds a path separator ('/' or '\\'), which would make nested folders or leave OUT"
    if name.startswith("."):
        return "starts with a dot, which names a hidden folder, this folder or the one above"
    if len(name.encode("utf-8")) > MAX_FOLDER_NAME_BYTES:
        return f"is longer than the {MAX_FOLDER_NAME_BYTES} bytes a folder name may have"
    return None


def check_task_class_names(names: list[str], where: str) -> None:
    """Class names of a task file: the project's class-name rules, and each one safe as a folder name.

    Errors name the class by its place (``class 3 of 5``), never by its text, until the
    identifier check has passed; everything is checked before anything is written.
    """
    total = len(names)
    labels = [f"class {i} of {total}" for i in range(1, total + 1)]
    for label, name in zip(labels, names):
        check_stored_text(f"{where}: {label}", name, why=_CLASS_NAME_WHY, fix=_RENAME,
                          limit=MAX_STORED_CLASS_NAME_CHARS)
        problem = _folder_problem(name)
        if problem is not None:
            raise InvalidInputError(f"{where}: {label} {problem}", _RENAME)
        if canonical_label(name) != name:  # readers of the image folders would store another spelling
            raise InvalidInputError(
                f"{where}: {label} has surrounding or repeated spaces or is not in Unicode NFC form",
                f"write it as {json.dumps(canonical_label(name), ensure_ascii=False)}")
    _refuse_duplicates(names, labels, where)
    check_class_names(zip(labels, names), where)  # the project's own rules (plain text), after the above


def _refuse_duplicates(names: list[str], labels: list[str], where: str) -> None:
    """Names that differ only in case or Unicode spelling, named by place only.

    The shared class-list check quotes both names; a task file's names may hold identifiers
    the identifier check cannot see, so they are never echoed here.
    """
    seen: dict[str, str] = {}
    for label, name in zip(labels, names):
        key = class_name_key(name)
        if key in seen:
            raise InvalidInputError(f"{where}: {label} duplicates {seen[key]} (class names are compared ignoring case "
                                    "and Unicode spelling)", "keep each class once")
        seen[key] = label


def value_probabilities(weights: dict[str, float], values: tuple[str, ...] | list[str]) -> np.ndarray:
    """The weights of one family over its values (0 for values not chosen), normalised to sum to 1."""
    w = np.array([weights.get(v, 0.0) for v in values], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return w / w.sum()


def _family_weights(choice: Any, fam: str, label: str, bad: Callable[..., InvalidInputError]) -> dict[str, float]:
    """One class's choice for one family as {value: weight}: a value, a list of values or a weight map."""
    if isinstance(choice, str):
        choice = [choice]
    if isinstance(choice, list):
        if not all(isinstance(v, str) for v in choice):
            raise bad(f"{label}: {fam!r} lists something that is not a value name")
        choice = {v: 1.0 for v in choice}
    if not isinstance(choice, dict) or not choice:
        raise bad(f"{label}: {fam!r} must be a value, a list of values or {{value: weight}}")
    for v, w in choice.items():
        if v not in FAMILIES[fam]:
            raise bad(f"{label}: unknown value {v!r} for attribute {fam!r}",
                      f"allowed values for {fam}: {', '.join(FAMILIES[fam])}")
        # bool is an int in Python; true/false is no weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise bad(f"{label}: weight of {fam}={v!r} must be a finite positive number")
    weights = {v: float(w) for v, w in choice.items()}
    p = value_probabilities(weights, FAMILIES[fam])
    if not np.all(np.isfinite(p)) or abs(float(p.sum()) - 1.0) > 1e-9:  # sums that overflow or vanish
        raise bad(f"{label}: the weights of {fam} cannot be normalised (their sum is too large or too small)",
                  "use ordinary weights such as 1 and 3, or probabilities")
    return weights


def _classes(classes_in: Any, bad: Callable[..., InvalidInputError],
             where: str) -> dict[str, dict[str, dict[str, float]]]:
    """The ``classes`` field: names checked first (nothing is echoed before), then each family's weights."""
    if not isinstance(classes_in, dict) or len(classes_in) < 2:
        raise bad("'classes' must map at least two class names to attribute choices")
    check_task_class_names(list(classes_in), where)
    classes: dict[str, dict[str, dict[str, float]]] = {}
    for cname, spec in classes_in.items():
        label = f"class {cname!r}"  # the names passed the identifier check above
        if not isinstance(spec, dict):
            raise bad(f"{label} must map attribute families to values")
        unknown = next((fam for fam in spec if fam not in FAMILIES), None)
        if unknown is not None:
            raise bad(f"{label}: unknown attribute {unknown!r}", f"attributes are: {', '.join(FAMILIES)}")
        classes[cname] = {fam: _family_weights(choice, fam, label, bad) for fam, choice in spec.items()}
    return classes


def _confusion_pairs(pairs_in: Any, classes: dict, bad: Callable[..., InvalidInputError]) -> list[tuple[str, str]]:
    """The ``confusion_pairs`` field: a list of two class names each (named by position when wrong)."""
    if not isinstance(pairs_in, list):
        raise bad("'confusion_pairs' must be a list of [class, class] pairs")
    pairs = []
    for i, pair in enumerate(pairs_in, start=1):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) and p in classes for p in pair)):
            raise bad(f"confusion pair {i} must name two classes of the task")
        pairs.append((pair[0], pair[1]))
    return pairs


def _validate(doc: Any, where: str) -> TaskSpec:
    """Check a task document and build the TaskSpec; every problem names its place."""
    def bad(msg: str, hint: str = "fix the task file") -> InvalidInputError:
        return InvalidInputError(f"{where}: {msg}", hint)

    if not isinstance(doc, dict):
        raise bad("a task file must be a JSON object")
    version = doc.get("schema_version")
    if type(version) is not int or version != TASK_SCHEMA_VERSION:  # true and 1.0 equal 1 in Python
        raise bad(f"schema_version must be {TASK_SCHEMA_VERSION}")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise bad("'name' must be a non-empty string")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise bad("'description' must be a string")
    classes = _classes(doc.get("classes"), bad, where)
    pairs = _confusion_pairs(doc.get("confusion_pairs", []), classes, bad)
    shift = doc.get("default_shift", "none")
    if not isinstance(shift, str):
        raise bad("'default_shift' must be a shift name such as \"stain\" or \"stain+blur\"",
                  f"use one of {', '.join(SHIFTS)} (or several joined with '+')")
    try:
        parse_shift(shift)
    except InvalidInputError as exc:
        raise bad(exc.message, exc.hint) from None
    size = doc.get("image_size", IMAGE_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 256:
        raise bad("image_size must be an integer between 32 and 256")
    return TaskSpec(name, description, classes, pairs, shift, size)


def builtin_task_names() -> list[str]:
    """Names of the built-in tasks (their files in ``tasks/``), sorted."""
    return sorted(p.name.removesuffix(".json") for p in TASKS_DIR.glob("*.json")
                  if not p.name.endswith(".attributes.json"))


def load_builtin_task(name: str) -> TaskSpec:
    """A built-in task by name; only the shipped names are looked up, never a path."""
    if name not in builtin_task_names():
        raise InvalidInputError(f"no built-in task named {name!r}",
                                f"built-in tasks: {', '.join(builtin_task_names())}; or pass --task-file")
    return load_task_file(TASKS_DIR / f"{name}.json")


def load_task_file(path: Path) -> TaskSpec:
    """A task file by path: a regular JSON file (not a folder, FIFO or device), validated whole."""
    path = Path(path)
    if path.name in ("", ".."):  # "." and ".." have no name of their own to show; name the folder they mean
        path = path.resolve()
    text = read_user_text(path, missing_hint="check the task file's path (--task-file, or a suite's sandbox_task)",
                          folder_hint="give a task JSON file, not a folder")
    spec = _validate(parse_user_json(text, path.name, "fix the task file"), path.name)
    spec.source = path
    return spec


def load_task(name_or_path: str | Path) -> TaskSpec:
    """A built-in task by name, or a task file: a Path, or a string ending in ``.json``."""
    if isinstance(name_or_path, Path) or Path(name_or_path).suffix == ".json":
        return load_task_file(Path(name_or_path))
    return load_builtin_task(name_or_path)


def list_tasks() -> list[TaskSpec]:
    """The built-in tasks, sorted by name."""
    return [load_builtin_task(n) for n in builtin_task_names()]


def sample_class_attrs(task: TaskSpec, class_index: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Attribute rows [n, F] for one class: its weighted choices, uniform for omitted families."""
    spec = task.classes[task.class_names[class_index]]
    cols = []
    for fam in FAMILY_NAMES:
        values = FAMILIES[fam]
        if fam in spec:
            cols.append(rng.choice(len(values), size=n, p=value_probabilities(spec[fam], values)))
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
