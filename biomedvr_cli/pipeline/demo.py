"""``demo`` as a library call: the real pipeline on a sandbox task, end to end.

Make a task, measure zero-shot accuracy (class names, then attributes), fit an adapter
on K shots, evaluate it on the held-out test images and predict one image. Each step
is the same library call the matching command makes.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from biomedvr_cli.atomic import missing_parents
from biomedvr_cli.errors import OutputExistsError, OutputNotWritableError, UsageError
from biomedvr_cli.method.metrics import SCALAR_METRICS


@dataclass
class DemoResult:
    """Accuracies of each stage plus the commands that reproduce them."""

    task: str
    shots: int
    zero_shot_class_names: float
    zero_shot_attributes: float
    adapted: dict[str, Any]
    prediction: dict[str, Any]
    commands: list[str] = field(default_factory=list)
    seconds: float = 0.0
    workdir: Path | None = None  # where the task, adapter and images are (kept after the run)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "shots": self.shots,
            "accuracy": {"zero_shot_class_names": self.zero_shot_class_names,
                         "zero_shot_attributes": self.zero_shot_attributes,
                         "biomedvr_adapter": self.adapted["accuracy"]},
            "adapter_metrics": {k: self.adapted[k] for k in SCALAR_METRICS},
            "prediction": self.prediction, "commands": self.commands, "seconds": round(self.seconds, 1),
            "workdir": str(self.workdir) if self.workdir is not None else None,
        }


def run_demo(
    workdir: Path | None = None,
    *,
    task: str = "blood-smear",
    shots: int = 8,
    seed: int = 0,
    per_class: int = 24,
    test_per_class: int = 40,
    force: bool = False,
    progress=None,
    notify: Callable[[str], None] = lambda message: None,
) -> DemoResult:
    """Run the whole pipeline in ``workdir``; an interrupted run removes what it created.

    Without ``workdir`` the run gets a new folder under the system's temporary folder (never
    the current folder, which may be a repository), announced through ``notify``.
    """
    import time

    from biomedvr_cli.data.sampling import default_val_shots
    from biomedvr_cli.sandbox.tasks import load_task

    start = time.perf_counter()
    most = max_demo_shots(per_class)
    if not isinstance(shots, int) or isinstance(shots, bool) or not 1 <= shots <= most:
        raise UsageError(f"--shots {shots} is not between 1 and {most}: the demo makes {per_class} training images "
                         f"a class and keeps {default_val_shots(most)} of them for validation", f"pass --shots {most} or fewer")
    spec = load_task(task)  # before any folder is made: an unknown task leaves nothing behind
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="biomedvr-demo-"))
        created = True
        notify(f"working in {workdir} (a new temporary folder; pass --workdir DIR to choose one)")
    else:
        workdir = Path(workdir)
        if workdir.exists() and not workdir.is_dir():  # before the --force hint: forcing would not help
            raise OutputNotWritableError(f"--workdir {workdir.name} is a file, not a folder", "choose a folder")
        if workdir.exists() and not force:
            raise OutputExistsError(workdir.name, option="--workdir")
        if workdir.is_dir() and any(workdir.iterdir()) and not (workdir / DEMO_MARK).is_file():
            # --force replaces data/ and adapter.safetensors in it: never in a folder an earlier demo did not make.
            raise UsageError(f"--workdir {workdir.name or workdir} holds files an earlier demo did not make; the demo "
                             "replaces its data/ and adapter.safetensors, so it is refused even with --force",
                             "give a new or empty folder, or one an earlier `biomedvr demo` made")
        created = not workdir.exists()
    made = (missing_parents(workdir.absolute()) or [None])[-1]  # the workdir, or the highest parent this run creates
    try:
        result = _run(workdir, spec, shots, seed, per_class, test_per_class, progress, notify)
    except BaseException:
        if created and made is not None:
            shutil.rmtree(made, ignore_errors=True)
        elif created:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    result.seconds = time.perf_counter() - start
    result.workdir = workdir
    return result


# Written into every working folder the demo makes: --force reuses only such a folder (or an empty one).
DEMO_MARK = ".biomedvr-demo"


def max_demo_shots(per_class: int = 24) -> int:
    """The most shots the demo's training images allow, validation images kept aside."""
    from biomedvr_cli.data.sampling import default_val_shots

    return max((s for s in range(1, per_class + 1) if s + default_val_shots(s) <= per_class), default=1)


def _run(workdir: Path, task, shots: int, seed: int, per_class: int, test_per_class: int, progress, notify) -> DemoResult:
    from biomedvr_cli.attributes import load_attributes
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.data import decode_to_tensors, open_source
    from biomedvr_cli.pipeline.evaluate import evaluate_adapter
    from biomedvr_cli.pipeline.fit import FitRequest, fit_adapter
    from biomedvr_cli.pipeline.predictor import load_predictor
    from biomedvr_cli.pipeline.predict import predict_files
    from biomedvr_cli.sandbox.dataset import make_task_dataset
    from biomedvr_cli.method.zero_shot import image_features, zero_shot_logits

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / DEMO_MARK).write_text("made by biomedvr demo; `biomedvr demo --workdir DIR --force` may reuse it\n",
                                     encoding="utf-8")
    data = workdir / "data"
    adapter = workdir / "adapter.safetensors"
    task_name = task.name
    q = shlex.quote
    commands = [
        f"biomedvr sandbox make {q(str(data))} --task {task_name} --train-per-class {per_class} "
        f"--test-per-class {test_per_class} --seed {seed} --shift default --force",
        f"biomedvr fit {q(str(data))} --shots {shots} --backbone sandbox --seed {seed} --out {q(str(adapter))} --force",
        f"biomedvr eval {q(str(data))} --adapter {q(str(adapter))}",
    ]
    notify(f"[1/5] making the sandbox task {task_name!r} ({per_class} train + {test_per_class} test images per class, default shift)")
    make_task_dataset(data, task, per_class, test_per_class, seed, "default", True)

    notify("[2/5] zero-shot on the test images (class names, then attributes)")
    backbone = load_backbone("sandbox", device="cpu")
    source = open_source(data)
    test = [r for r in source.records if r.split == "test"]
    classes = list(source.classes)
    batch = decode_to_tensors([r.path for r in test], backbone.image_size)
    labels = torch.tensor([classes.index(test[i].label) for i in batch.kept])
    feats = image_features(backbone, batch.images)
    attrs = load_attributes(data / "attributes.json")
    sets = attrs.sentence_sets()
    zs_names = float((zero_shot_logits(backbone, feats, classes, None).argmax(1) == labels).float().mean())
    zs_attrs = float((zero_shot_logits(backbone, feats, classes, sets).argmax(1) == labels).float().mean())

    notify(f"[3/5] fitting a BioMedVR adapter on {shots} shots per class")
    fit_adapter(FitRequest(images=data, shots=shots, out=adapter, attributes=data / "attributes.json", backbone="sandbox",
                           seed=seed, device="cpu", force=True), progress=progress, notify=lambda m: None)

    notify("[4/5] evaluating the adapter on the test images")
    predictor = load_predictor(adapter, device="cpu")
    report = evaluate_adapter(data, adapter, predictor=predictor)

    notify("[5/5] predicting one image")
    one = test[0].path
    commands.append(f"biomedvr predict {q(str(one))} --adapter {q(str(adapter))}")
    prediction = predict_files(predictor, [one], top_k=3)[0].to_dict()
    prediction["true_class"] = test[0].label
    return DemoResult(task_name, shots, zs_names, zs_attrs, report["metrics"], prediction, commands)
