"""Writing a task as an image-folder dataset: train/ and test/ class folders of PNGs.

Layout: ``OUT/train/<class>/<class-slug>-0000.png``, ``OUT/test/<class>/...``,
``OUT/classes.txt`` (one class name a line, in the task file's order; readers of the image
folders sort the class folders by name, and labels match by name) and ``OUT/attributes.json``
(the task's hand-written attributes file, when it has one). The tree is built in a
temporary sibling folder and renamed into place, so a failure leaves nothing half-made.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from biomedvr_cli.atomic import check_folder_writable, not_writable
from biomedvr_cli.attributes.textfile import read_user_json
from biomedvr_cli.errors import OutputExistsError, UsageError
from biomedvr_cli.sandbox.tasks import TaskSpec, generate_task_arrays, parse_shift


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "class"


def _write_split(tmp: Path, task: TaskSpec, split: str, n: int, seed: int, shift: str,
                 progress: Callable[[str, int, int], None] | None) -> int:
    """Generate one split's images into ``tmp/<split>/<class>/``; returns how many were written."""
    from PIL import Image

    images, labels = generate_task_arrays(task, n, seed, shift, split=split)
    for cname in task.class_names:
        (tmp / split / cname).mkdir(parents=True, exist_ok=True)
    for i, (img, y) in enumerate(zip(images, labels)):
        cname = task.class_names[int(y)]
        Image.fromarray(img).save(tmp / split / cname / f"{_slug(cname)}-{i % max(n, 1):04d}.png", optimize=False)
        if progress and (i + 1) % 100 == 0:
            progress(split, i + 1, len(images))
    return len(images)


def make_task_dataset(
    out: Path,
    task: TaskSpec,
    per_class: int,
    test_per_class: int,
    seed: int,
    shift: str,
    force: bool,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Generate and write the dataset; return a summary (paths, counts, shift, seed).

    Bad counts are a UsageError (exit 2); an OUT that exists (without ``force``) or that
    cannot be written is refused before any image is generated.
    """
    out = Path(out)
    if per_class < 1 or test_per_class < 0:
        raise UsageError(f"--train-per-class must be at least 1 and --test-per-class at least 0, got {per_class} and "
                         f"{test_per_class}", "pick positive counts")
    resolved = task.default_shift if shift == "default" else shift
    parse_shift(resolved)
    if out.exists() and not force:
        raise OutputExistsError(out.name)
    check_folder_writable(out)
    attr_path = task.attributes_path()  # read before any image is made: a bad file fails fast
    attributes = None if attr_path is None else read_user_json(
        attr_path, missing_hint="check the attributes file beside the task file", fix_hint=f"fix {attr_path.name}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise not_writable(out, exc) from None
    try:
        counts = {split: _write_split(tmp, task, split, n, seed, resolved, progress)
                  for split, n in (("train", per_class), ("test", test_per_class))}
        (tmp / "classes.txt").write_text("\n".join(task.class_names) + "\n", encoding="utf-8")
        if attributes is not None:
            (tmp / "attributes.json").write_text(json.dumps(attributes, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # disk full, or the folder changed under us
            raise not_writable(out, exc) from None
        raise
    return {
        "out": str(out),
        "task": task.name,
        "classes": task.class_names,
        "train_images": counts["train"],
        "test_images": counts["test"],
        "shift": resolved,
        "seed": seed,
        "attributes": str(out / "attributes.json") if attr_path is not None else None,
    }
