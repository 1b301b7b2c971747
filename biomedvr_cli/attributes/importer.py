"""Convert the reference implementation's attribute files into our format.

The reference keeps one JSON file per set (descriptive, distinctive, confusion), each an
object of ``class_name_with_underscores -> [sentence, ...]``. Underscores become spaces;
with a class list the names are matched ignoring case and spacing and the user's
spelling and order win. Sentences under 20 characters (which the method drops anyway)
and repeats are dropped and counted, so a reference file imports as it would be used.
The task text, class names and sentences pass the identifier check of ``privacy`` before
anything is written; an error names the reference file and the place, never the text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from biomedvr_cli import __version__
from biomedvr_cli.attributes.classlist import normalise_class_name
from biomedvr_cli.attributes.privacy import ATTRIBUTES_WHY, check_stored_text, plain_task
from biomedvr_cli.attributes.schema import (
    MAX_TASK_CHARS,
    MIN_SENTENCE_CHARS,
    SET_NAMES,
    AttributeFile,
    validate_attributes,
)
from biomedvr_cli.attributes.textfile import parse_user_json
from biomedvr_cli.data.files import MAX_USER_TEXT_BYTES, read_regular_file
from biomedvr_cli.errors import InvalidInputError


@dataclass(frozen=True)
class ImportReport:
    """The imported file plus what was left out on the way."""

    attributes: AttributeFile
    dropped_classes: tuple[str, ...]
    dropped_sentences: int


def _match_key(name: str) -> str:
    return normalise_class_name(name.replace("_", " ")).casefold()


def _refuse_repeated_keys(pairs: list[tuple[str, Any]], name: str) -> dict[str, Any]:
    """An object of the file as a dict; a key given twice would silently lose the first list of sentences."""
    out: dict[str, Any] = {}
    for index, (key, value) in enumerate(pairs, start=1):
        if key in out:  # by position: the key is a class name not yet through the identifier check
            raise InvalidInputError(f"{name}: key {index} of {len(pairs)} in one object repeats an earlier key "
                                    "(its first list of sentences would be lost)", "keep each class once")
        out[key] = value
    return out


def _read_reference(path: Path, set_name: str) -> tuple[dict[str, list[Any]], str]:
    """One reference file as ``{display name: sentences}`` and its sha256."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path.name} (--{set_name}) not found", "check the path")
    raw = read_regular_file(path, max_bytes=MAX_USER_TEXT_BYTES, what="reference JSON file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path.name} is not valid UTF-8 (byte {exc.start})", "save it as UTF-8") from None
    data = parse_user_json(text, path.name, "give the reference implementation's JSON file",
                           object_pairs_hook=lambda pairs: _refuse_repeated_keys(pairs, path.name))
    if not isinstance(data, dict) or not data:
        raise InvalidInputError(
            f"{path.name} must be a non-empty JSON object of class name -> list of sentences",
            "give the reference implementation's JSON file",
        )
    out: dict[str, list[Any]] = {}
    keys: dict[str, str] = {}
    for index, (raw_name, sentences) in enumerate(data.items(), start=1):
        name = normalise_class_name(raw_name.replace("_", " "))
        check_stored_text(f"{path.name}: class {index} of {len(data)}", name, why=ATTRIBUTES_WHY,
                          fix="rename the class to its diagnosis or finding")
        if not name:
            raise InvalidInputError(f"{path.name} has an empty class name", "fix the file")
        if _match_key(name) in keys:
            raise InvalidInputError(
                f"{path.name}: classes {keys[_match_key(name)]!r} and {raw_name!r} are the same name",
                "keep one of them",
            )
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise InvalidInputError(f"{path.name}: class {raw_name!r} must map to a list of strings", "fix the file")
        keys[_match_key(name)] = raw_name
        out[name] = sentences
    return out, hashlib.sha256(raw).hexdigest()


def _class_entry(name: str, sets: dict[str, dict[str, list[Any]]], by_key: dict[str, dict[str, str]],
                 paths: dict[str, Path]) -> tuple[dict[str, list[str]], int]:
    """One class's three sets from the reference files, and how many sentences were dropped (short or repeated)."""
    key = _match_key(name)
    entry: dict[str, list[str]] = {}
    seen: set[str] = set()
    dropped = 0
    for set_name in SET_NAMES:
        if key not in by_key[set_name]:
            raise InvalidInputError(
                f"{paths[set_name].name} has no class matching {name!r}",
                "check the spelling of the class in the --classes or --class list and in the reference files "
                "(underscores count as spaces, case is ignored)",
            )
        kept: list[str] = []
        short = repeated = 0
        for number, sentence in enumerate(sets[set_name][by_key[set_name][key]], start=1):
            text = sentence.strip()
            check_stored_text(f"{paths[set_name].name}: class {name!r} sentence {number}", text,
                              why=ATTRIBUTES_WHY, fix="remove the patient detail from the sentence")
            folded = " ".join(text.split()).casefold()
            if len(text) < MIN_SENTENCE_CHARS or folded in seen:
                short, repeated = short + (len(text) < MIN_SENTENCE_CHARS), repeated + (folded in seen)
                dropped += 1
                continue
            seen.add(folded)
            kept.append(text)
        if not kept:
            why = ", ".join(part for part in (f"{short} shorter than {MIN_SENTENCE_CHARS} characters" if short else "",
                                              f"{repeated} repeating a sentence of another set" if repeated else "")
                            if part)
            raise InvalidInputError(
                f"{paths[set_name].name}: class {name!r} has no sentence left"
                + (f" after dropping {why}" if why else " (its list is empty)"),
                "add sentences for it (each set needs its own), or write that class by hand",
            )
        entry[set_name] = kept
    return entry, dropped


def import_reference(
    descriptive: Path,
    distinctive: Path,
    confusion: Path,
    *,
    class_names: Sequence[str] | None = None,
    task: str = "",
) -> ImportReport:
    """Build a validated :class:`AttributeFile` from the three reference files."""
    # The same words as `attributes --task`, which refuses such text before sending it.
    task = plain_task(task, stored=True)
    check_stored_text("the --task text", task, why=ATTRIBUTES_WHY, limit=MAX_TASK_CHARS,
                      fix="describe the imaging task in a few plain words")
    paths = {"descriptive": Path(descriptive), "distinctive": Path(distinctive), "confusion": Path(confusion)}
    sets: dict[str, dict[str, list[Any]]] = {}
    digests: dict[str, str] = {}
    for set_name in SET_NAMES:
        sets[set_name], digests[set_name] = _read_reference(paths[set_name], set_name)
    by_key = {s: {_match_key(n): n for n in sets[s]} for s in SET_NAMES}

    if class_names is None:
        # The descriptive file's order is the class order; the others must list the same classes.
        wanted = list(sets["descriptive"])
        for set_name in ("distinctive", "confusion"):
            extra = [n for k, n in by_key[set_name].items() if k not in by_key["descriptive"]]
            if extra:
                raise InvalidInputError(
                    f"{paths[set_name].name} has class {extra[0]!r}, which {paths['descriptive'].name} lacks",
                    "give the three files of one dataset, or pass --classes to pick classes",
                )
    else:
        wanted = list(class_names)
    for index, name in enumerate(wanted, start=1):  # a --classes list is checked here, before any name is quoted
        check_stored_text(f"class {index} of {len(wanted)}", name, why=ATTRIBUTES_WHY,
                          fix="rename the class to its diagnosis or finding")
    wanted_keys = {_match_key(n) for n in wanted}
    dropped_classes = tuple(n for k, n in by_key["descriptive"].items() if k not in wanted_keys)

    classes: dict[str, dict[str, list[str]]] = {}
    dropped = 0
    for name in wanted:
        classes[name], dropped_here = _class_entry(name, sets, by_key, paths)
        dropped += dropped_here

    provenance = {
        "source": "import",
        "imported_sha256": digests,
        "created_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "biomedvr_version": __version__,
    }
    document = {"schema_version": 1, "task": task, "classes": classes, "provenance": provenance}
    return ImportReport(validate_attributes(document), dropped_classes, dropped)
