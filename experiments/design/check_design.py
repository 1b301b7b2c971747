"""Construction checks of the design tasks (no model run, no accuracy measured).

    .venv/bin/python experiments/design/check_design.py

For every task file here: it loads; 2 images a class generate at its default shift; its
attribute file validates against its classes (5 descriptive, 5 distinctive, 5 confusion
sentences a class, and for a class in a pair 4 of 5 confusion sentences describe the partner:
they are the partner's descriptive sentences); each pair differs in exactly one family,
never `shape`; `image_size` is 96. For every class name: none of its tokens (open_clip BPE)
is among `caption_token_ids` (start and end tokens aside), and no word of it occurs in any
other file under `experiments/` or `biomedvr_cli/sandbox/` (results of this folder's own check
runs excepted). Task names must be new too. The suite file loads.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from biomedvr_cli.attributes.schema import load_attributes  # noqa: E402
from biomedvr_cli.benchmark.protocol import load_suite  # noqa: E402
from biomedvr_cli.sandbox.modelio import caption_token_ids, get_tokenizer  # noqa: E402
from biomedvr_cli.sandbox.tasks import generate_task_arrays, load_task  # noqa: E402

SKIP_DIRS = {HERE, ROOT / "experiments" / "results" / "design-check"}


def other_texts() -> list[tuple[Path, str]]:
    """Every readable text file under experiments/ and biomedvr_cli/sandbox/ outside this folder."""
    out = []
    for base in (ROOT / "experiments", ROOT / "biomedvr_cli" / "sandbox"):
        for p in base.rglob("*"):
            if not p.is_file() or any(d == p or d in p.parents for d in SKIP_DIRS):
                continue
            if p.suffix not in {".json", ".md", ".py", ".csv", ".jsonl", ".txt"}:
                continue
            try:
                out.append((p, p.read_text(encoding="utf-8").lower()))
            except (OSError, UnicodeDecodeError):
                pass
    return out


def main() -> int:
    problems: list[str] = []
    tok = get_tokenizer()
    seen = caption_token_ids(tok) - {tok.sot_token_id, tok.eot_token_id}
    texts = other_texts()
    task_files = sorted(p for p in HERE.glob("*.json") if not p.name.endswith(".attributes.json")
                        and not p.name.endswith("-suite.json"))
    for path in task_files:
        task = load_task(path)
        if task.image_size != 96:
            problems.append(f"{task.name}: image_size {task.image_size}")
        images, _ = generate_task_arrays(task, 2, 0, "default", split="test")
        assert images.shape == (2 * len(task.classes), 96, 96, 3), images.shape
        if any(re.search(rf"\b{re.escape(task.name)}\b", t) for _, t in texts):
            problems.append(f"task name {task.name!r} used elsewhere")
        for name in task.class_names:
            bad = [tok.decoder[i] for i in tok.encode(name) if i in seen]
            if bad:
                problems.append(f"{task.name}: {name!r} has caption tokens {bad}")
            for w in name.split():
                hits = [p for p, t in texts if re.search(rf"\b{re.escape(w)}\b", t)]
                if hits:
                    problems.append(f"{task.name}: word {w!r} of {name!r} already used in {hits[0].relative_to(ROOT)}")
        partner = {}
        for a, b in task.confusion_pairs:
            partner[a], partner[b] = b, a
            top = {c: {f: max(w, key=w.get) for f, w in task.classes[c].items()} for c in (a, b)}
            diff = [f for f in set(top[a]) | set(top[b]) if top[a].get(f) != top[b].get(f)]
            if len(diff) != 1 or diff[0] == "shape" or "shape" in task.classes[a] or "shape" in task.classes[b]:
                problems.append(f"{task.name}: pair {a} / {b} differs in {diff}")
        attrs = load_attributes(task.attributes_path())
        if attrs.task != task.name or set(attrs.classes) != set(task.class_names):
            problems.append(f"{task.name}: attribute file does not match the classes")
        for c in task.class_names:
            entry = attrs.classes[c]
            counts = (len(entry.descriptive), len(entry.distinctive), len(entry.confusion))
            if counts != (5, 5, 5):
                problems.append(f"{task.name}: {c} has {counts} sentences")
            if c in partner:
                theirs = set(attrs.classes[partner[c]].descriptive)
                n = sum(s.removeprefix("a look-alike: ") in theirs for s in entry.confusion)
                if n != 4:
                    problems.append(f"{task.name}: {c}: {n} of 5 confusion sentences describe the partner")
        print(f"ok  {task.name}: {len(task.classes)} classes, shift {task.default_shift}, pairs {task.confusion_pairs}")
    suite = load_suite(HERE / "design-suite.json")
    print(f"ok  suite loads: {len(suite.datasets)} datasets")
    for p in problems:
        print("PROBLEM", p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
