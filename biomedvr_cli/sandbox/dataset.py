"""Writing a task as an image-folder dataset: train/ and test/ class folders of PNGs.

Layout: ``OUT/train/<class>/<class-slug>-0000.png``, ``OUT/test/<class>/...``,
``OUT/classes.txt`` (one class name a line, in the task file's order; readers of the image
folders sort the class folders by name, and labels match by name) and ``OUT/attributes.json``
(the task's hand-written attributes file, when it has one). The tree is built in a
temporary sibling folder and renamed into place, so a failure leaves nothing half-made; an
OUT replaced with ``force`` is moved aside first and put back if the rename fails, and
parent folders the command created are removed again on failure or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from biomedvr_cli.atomic import check_folder_writable, missing_parents, not_writable
from biomedvr_cli.attributes.schema import AttributeFile, load_attributes
from biomedvr_cli.errors import InvalidInputError, OutputExistsError, UsageError
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


def _refuse_out_holding_cwd(target: Path) -> None:
    """Refuse (exit 2, even with --force) an OUT that is the current folder or one above it.

    OUT is replaced as a whole, so such an OUT would delete the user's files and the folder
    they work in; its staging folder would also land inside it.
    """
    try:
        here = Path.cwd().resolve()
    except OSError:  # the current folder was deleted: nothing of it to protect
        return
    where = target.parent.resolve() / target.name  # a link as OUT is replaced itself, not what it points to
    if not here.is_relative_to(where):
        return
    relation = "is the current folder" if here == where else "holds the current folder"
    raise UsageError(f"OUT {where.name or where} {relation}; the dataset replaces OUT as a whole, which would delete "
                     "the files in it, so it is refused even with --force",
                     "give a new folder for the dataset, such as data")


def _check_attributes(path: Path, task: TaskSpec) -> AttributeFile:
    """The attributes file beside the task file, validated, with exactly the task's classes.

    Checked before any image is made, so ``make`` never writes a dataset that ``fit`` refuses;
    classes are named by place, never by text (they may hold identifiers).
    """
    attrs = load_attributes(path)  # every problem is one line starting with the file's name (exit 3)
    task_name = task.source.name if task.source is not None else "the task file"
    fix = f"give {path.name} exactly the class names of {task_name}, or move it away"
    for i, name in enumerate(task.class_names, start=1):
        if name not in attrs.classes:
            raise InvalidInputError(f"{path.name} has no sentences for class {i} of {len(task.class_names)} of "
                                    f"{task_name} (class names must match exactly)", fix)
    theirs = attrs.class_names
    for j, name in enumerate(theirs, start=1):
        if name not in task.classes:
            raise InvalidInputError(f"{path.name}: its class {j} of {len(theirs)} is not a class of {task_name}", fix)
    return attrs


def _remove_created(folders: list[Path]) -> None:
    """Remove folders this command created, innermost first; one someone else filled meanwhile stays."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished tree ``tmp`` to ``out``; an existing ``out`` is moved aside first and
    deleted only once the new tree is in place (put back if the rename fails or is interrupted)."""
    if not (out.exists() or out.is_symlink()):
        tmp.rename(out)
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    aside = holder / "old"
    try:
        os.rename(out, aside)
    except BaseException:
        holder.rmdir()
        raise
    try:
        tmp.rename(out)
    except BaseException:
        os.rename(aside, out)
        holder.rmdir()
        raise
    # The new dataset is in place: deleting the old one cannot undo that, so it never fails the run,
    # and Ctrl-C during it still finishes it, so no hidden copy of the old OUT stays behind.
    try:
        shutil.rmtree(holder, ignore_errors=True)
    except BaseException:
        shutil.rmtree(holder, ignore_errors=True)
        raise


def _umask_mode(folder: Path) -> None:
    # mkdtemp makes 0700 folders; give the dataset the mode a plain mkdir would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)


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

    Bad counts are a UsageError (exit 2); an OUT that exists (without ``force``), that holds
    the current folder, or that cannot be written is refused before any image is generated,
    and so is an attributes file beside the task file that is invalid or has other classes (exit 3).
    """
    given = Path(out)
    # "." and ".." have no name of their own and no parent to stage beside: use the real folder.
    out = Path(os.path.abspath(given))
    if per_class < 1 or test_per_class < 0:
        raise UsageError(f"--train-per-class must be at least 1 and --test-per-class at least 0, got {per_class} and "
                         f"{test_per_class}", "pick positive counts")
    resolved = task.default_shift if shift == "default" else shift
    parse_shift(resolved)
    _refuse_out_holding_cwd(out)
    if (out.exists() or out.is_symlink()) and not force:
        raise OutputExistsError(out.name, option="OUT")
    check_folder_writable(out)
    attr_path = task.attributes_path()  # read before any image is made: a bad file fails fast
    attributes = None if attr_path is None else _check_attributes(attr_path, task)
    created = missing_parents(out.parent)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        _umask_mode(tmp)
        counts = {split: _write_split(tmp, task, split, n, seed, resolved, progress)
                  for split, n in (("train", per_class), ("test", test_per_class))}
        (tmp / "classes.txt").write_text("\n".join(task.class_names) + "\n", encoding="utf-8")
        if attributes is not None:
            (tmp / "attributes.json").write_text(attributes.to_json(), encoding="utf-8")
        _move_into_place(tmp, out)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_created(created)
        if isinstance(exc, OSError):  # disk full, a read-only folder, or the folder changed under us
            raise not_writable(out, exc) from None
        raise
    return {
        "out": str(given),
        "task": task.name,
        "classes": task.class_names,
        "train_images": counts["train"],
        "test_images": counts["test"],
        "shift": resolved,
        "seed": seed,
        "attributes": str(given / "attributes.json") if attr_path is not None else None,
    }
