"""The attributes file: dataclasses, validation, load and save.

The on-disk format (``schema_version`` 1)::

    {
      "schema_version": 1,
      "task": "dermoscopy",
      "classes": {
        "melanoma": {"descriptive": [...], "distinctive": [...], "confusion": [...]},
        ...
      },
      "provenance": {"source": "llm", "provider": "anthropic", "model": "...", ...}
    }

Hand-written, imported and LLM-generated files all go through :func:`validate_attributes`,
so ``fit`` can trust any file that loads. Every problem is reported as one
:class:`InvalidInputError` line that names the exact place (``classes["x"].confusion[2]``).
Class names, the task and every sentence pass the identifier check of ``privacy`` (the file
is copied into adapters and caches), and class names are read in Unicode NFC form, so that
"café" typed two ways is one class.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biomedvr_cli.atomic import write_text_atomic
from biomedvr_cli.attributes.privacy import ATTRIBUTES_WHY, check_stored_text, find_identifier_in_id
from biomedvr_cli.attributes.textfile import MAX_JSON_DEPTH, JsonNumberError, json_depth, load_json_strictly, read_user_text
from biomedvr_cli.errors import InvalidInputError

SCHEMA_VERSION = 1
SET_NAMES: tuple[str, ...] = ("descriptive", "distinctive", "confusion")
# Sentences under 20 characters carry too little to score against (docs/method.md).
MIN_SENTENCE_CHARS = 20
# Far above any useful sentence (text encoders truncate at 77-256 tokens); catches pasted blobs.
MAX_SENTENCE_CHARS = 1000
MAX_CLASS_NAME_CHARS = 200
# The task text is a few words ("breast ultrasound"); the LLM is sent at most 300 characters of it.
MAX_TASK_CHARS = 1000
_TOP_LEVEL_KEYS = ("schema_version", "task", "classes", "provenance")

_VALIDATE_FIX = "correct the file; `biomedvr attributes validate FILE` checks it"
_IDENTIFIER_FIX = "remove the patient detail; sentences describe what the images show"


@dataclass(frozen=True)
class ClassAttributes:
    """The three sentence sets of one class: descriptive, distinctive, confusion-aware."""

    descriptive: tuple[str, ...]
    distinctive: tuple[str, ...]
    confusion: tuple[str, ...]

    def as_dict(self) -> dict[str, list[str]]:
        """The JSON form: set name -> list of sentences."""
        return {name: list(getattr(self, name)) for name in SET_NAMES}


@dataclass(frozen=True)
class AttributeFile:
    """A validated attributes file. ``classes`` keeps the file's (or the user's) class order."""

    task: str
    classes: dict[str, ClassAttributes]
    provenance: dict[str, Any] = field(default_factory=dict)

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of ``classes`` (keys sorted, compact, UTF-8).

        Task and provenance are left out on purpose: two files with the same sentences
        train the same model, whoever wrote them and whenever.
        """
        canonical = json.dumps(
            {name: attrs.as_dict() for name, attrs in self.classes.items()},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def sentence_sets(self, classes: list[str] | None = None) -> dict[str, dict[str, list[str]]]:
        """``{class: {set: [sentences]}}`` for ``classes`` (default: every class, in file order)."""
        return {name: self.classes[name].as_dict() for name in (classes if classes is not None else self.classes)}

    @property
    def class_names(self) -> list[str]:
        """Class names in file order."""
        return list(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, keys in the documented order."""
        return {
            "schema_version": SCHEMA_VERSION,
            "task": self.task,
            "classes": {name: attrs.as_dict() for name, attrs in self.classes.items()},
            "provenance": dict(self.provenance),
        }

    def to_json(self) -> str:
        """The file's text: indented, UTF-8 kept readable, trailing newline."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def same_content(self, other: AttributeFile) -> bool:
        """True when task, class order and sentences match (provenance ignored)."""
        return (
            self.task == other.task
            and self.class_names == other.class_names
            and self.content_hash() == other.content_hash()
        )


def _fail(where: str, problem: str, fix: str = _VALIDATE_FIX) -> InvalidInputError:
    return InvalidInputError(f"{where}: {problem}" if where else problem, fix)


def class_name_key(name: str) -> str:
    """The form in which two class names are the same class: NFC, case-folded (``BASOPHIL`` = ``basophil``)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def _sentence_key(sentence: str) -> str:
    # Duplicates that differ only in case or spacing score identically, so they count as one.
    return " ".join(sentence.split()).casefold()


def validate_sentences(where: str, value: Any, *, min_count: int = 1) -> tuple[str, ...]:
    """Check one sentence list and return it stripped.

    ``where`` names the list in messages, e.g. ``classes["benign"].confusion``.
    """
    if not isinstance(value, list):
        raise _fail(where, f"must be a list of sentences, not {_json_type(value)}")
    if len(value) < min_count:
        if not value:
            raise _fail(where, "is empty; each set needs at least one sentence")
        raise _fail(where, f"has {len(value)} sentences; {min_count} are needed")
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(item, str):
            raise _fail(here, f"must be a string, not {_json_type(item)}")
        sentence = item.strip()
        if len(sentence) < MIN_SENTENCE_CHARS:
            raise _fail(
                here,
                f"is {len(sentence)} characters long; each sentence needs at least {MIN_SENTENCE_CHARS}",
            )
        if len(sentence) > MAX_SENTENCE_CHARS:
            raise _fail(here, f"is {len(sentence)} characters long; at most {MAX_SENTENCE_CHARS} are allowed")
        check_stored_text(here, sentence, why=ATTRIBUTES_WHY, fix=_IDENTIFIER_FIX)
        key = _sentence_key(sentence)
        if key in seen:
            raise _fail(here, f"repeats {where}[{seen[key]}]")
        seen[key] = i
        out.append(sentence)
    return tuple(out)


def validate_class_entry(name: str, value: Any, *, min_count: int = 1) -> ClassAttributes:
    """Check the three sets of one class; also rejects a sentence repeated across sets."""
    where = f"classes[{json.dumps(name, ensure_ascii=False)}]"
    if not isinstance(value, dict):
        raise _fail(where, f"must be an object with {', '.join(SET_NAMES)}, not {_json_type(value)}")
    unknown = [k for k in value if k not in SET_NAMES]
    if unknown:
        raise _fail(where, f"{_unknown_key(list(value), unknown[0], SET_NAMES)}; expected only {', '.join(SET_NAMES)}")
    missing = [k for k in SET_NAMES if k not in value]
    if missing:
        raise _fail(where, f"is missing the {missing[0]} set")
    sets = {k: validate_sentences(f"{where}.{k}", value[k], min_count=min_count) for k in SET_NAMES}
    # A confusion sentence identical to a descriptive one would push the class away from itself.
    first_seen: dict[str, str] = {}
    for set_name in SET_NAMES:
        for i, sentence in enumerate(sets[set_name]):
            key = _sentence_key(sentence)
            here = f"{where}.{set_name}[{i}]"
            if key in first_seen:
                raise _fail(here, f"repeats {first_seen[key]}")
            first_seen[key] = here
    return ClassAttributes(**sets)


def validate_attributes(data: dict) -> AttributeFile:
    """Validate a parsed attributes document and return it as an :class:`AttributeFile`.

    Raises :class:`InvalidInputError` (exit 3) naming the first problem found.
    """
    if not isinstance(data, dict):
        raise _fail("", f"the document must be a JSON object, not {_json_type(data)}")
    unknown = [k for k in data if k not in _TOP_LEVEL_KEYS]
    if unknown:
        raise _fail("", f"{_unknown_key(list(data), unknown[0], _TOP_LEVEL_KEYS, 'top-level key')}; "
                        f"expected {', '.join(_TOP_LEVEL_KEYS)}")
    if "schema_version" not in data:
        raise _fail("", "schema_version is missing", f'add "schema_version": {SCHEMA_VERSION} at the top')
    version = data["schema_version"]
    if version != SCHEMA_VERSION or not isinstance(version, int) or isinstance(version, bool):  # 1.0 is not 1
        raise _fail(
            "schema_version",
            f"is {_shown_version(version)}; this biomedvr reads version {SCHEMA_VERSION}",
            "regenerate the file with this biomedvr, or upgrade biomedvr",
        )
    task = data.get("task", "")
    if not isinstance(task, str):
        raise _fail("task", f"must be a string, not {_json_type(task)}")
    check_stored_text("task", task, why=ATTRIBUTES_WHY, limit=MAX_TASK_CHARS,
                      fix="describe the imaging task in a few plain words")
    classes = data.get("classes")
    if classes is None:
        raise _fail("", "classes is missing")
    if not isinstance(classes, dict):
        raise _fail("classes", f"must be an object of class name -> sets, not {_json_type(classes)}")
    if len(classes) < 2:  # a classifier tells classes apart; confusion sentences name another class
        raise _fail("classes", f"has {len(classes)} class(es); at least two are needed",
                    "list every class of the task")
    out: dict[str, ClassAttributes] = {}
    folded: dict[str, str] = {}
    for index, (raw_name, entry) in enumerate(classes.items(), start=1):
        name = unicodedata.normalize("NFC", raw_name)
        # Checked by position before the name is ever quoted: it may hold what must not be shown.
        check_stored_text(f"classes: class {index} of {len(classes)}", name, why=ATTRIBUTES_WHY,
                          fix="rename the class to its diagnosis or finding")
        shown = json.dumps(name, ensure_ascii=False)
        if not name.strip():
            raise _fail("classes", "has an empty class name")
        if name != " ".join(name.split()):  # as class folders and classes files read them, or they never match
            raise _fail(f"classes[{shown}]", "class names must not have leading, trailing or repeated spaces, nor "
                        "spaces other than the plain one (a no-break space, say)", "type the name with plain spaces")
        if len(name) > MAX_CLASS_NAME_CHARS:
            raise _fail(f"classes[{shown}]", f"class name is over {MAX_CLASS_NAME_CHARS} characters")
        key = class_name_key(name)
        if key in folded:
            raise _fail(
                f"classes[{shown}]",
                f"duplicates class {json.dumps(folded[key], ensure_ascii=False)} "
                "(names are compared ignoring case and Unicode spelling)",
            )
        folded[key] = name
        out[name] = validate_class_entry(name, entry)
    provenance = data.get("provenance", {})
    if not isinstance(provenance, dict):
        raise _fail("provenance", f"must be an object, not {_json_type(provenance)}")
    _check_provenance(provenance, "provenance", technical=None)
    return AttributeFile(task=task.strip(), classes=out, provenance=dict(provenance))


# Provenance fields biomedvr writes whose values are ids, hashes and times (digits that the
# identifier check would take for a record number): they must look like one, nothing more.
_TECHNICAL_KEYS = frozenset({"model", "created_at", "prompt_sha256", "imported_sha256"})
_TECHNICAL_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,199}")


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?")


def is_technical_value(value: str) -> bool:
    """An id as provenance stores one (a model id such as ``claude-haiku-4-5@20251001``,
    ``my-finetune-2024-08-06`` or a Bedrock ARN): letters, digits and ``._:@+/-``, with no e-mail
    address, record label or file name in it (privacy.find_identifier_in_id)."""
    if not _TECHNICAL_VALUE.fullmatch(value) or value.startswith(("/", "..")):
        return False
    return find_identifier_in_id(value) is None


def _technical_problem(field: str, value: str) -> str | None:
    """Why a technical provenance field's value is not what biomedvr writes there, else None."""
    if field in ("prompt_sha256", "imported_sha256"):
        return None if _SHA256.fullmatch(value) else "must be a SHA-256 digest (64 hexadecimal digits)"
    if field == "created_at":
        return None if _TIMESTAMP.fullmatch(value) else "must be an ISO 8601 time, e.g. 2026-12-07T10:00:00Z"
    if not is_technical_value(value):
        return "must be a plain id (letters, digits and ._:@+/-, at most 200), with no e-mail, record label or file name"
    return None


def _check_provenance(value: Any, where: str, *, technical: str | None) -> None:
    """Provenance is shown by ``validate`` and kept in caches: every key and text passes the identifier
    check, except the values of the technical fields (``technical``: the field they are under), which
    must be what biomedvr writes there: a digest, a time, or a plain id (see :func:`_technical_problem`)."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_stored_text(f"{where}: a key", key, why=ATTRIBUTES_WHY, limit=100, fix=_PROVENANCE_FIX)
            field = technical or (key if key in _TECHNICAL_KEYS else None)
            _check_provenance(item, f"{where}.{key}", technical=field)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_provenance(item, f"{where}[{i}]", technical=technical)
    elif isinstance(value, str):
        if technical:
            problem = _technical_problem(technical, value)
            if problem:
                raise _fail(where, problem, _PROVENANCE_FIX)
        else:
            check_stored_text(where, value, why=ATTRIBUTES_WHY, limit=MAX_TASK_CHARS, fix=_PROVENANCE_FIX)


_PROVENANCE_FIX = "remove it from provenance; provenance says how the file was made, in a few plain words"


def parse_attributes_text(text: str) -> AttributeFile:
    """Parse and validate attributes JSON text (duplicate keys are errors, not silently merged)."""
    try:
        data = load_json_strictly(text, _no_duplicate_keys)
    except JsonNumberError as exc:
        raise _fail("", str(exc)) from None
    except _DuplicateKey as exc:
        raise _fail("", f"key {exc.position} of {exc.count} in one object repeats an earlier key "
                        "(its first value would be lost)", "keep each key once") from None
    except json.JSONDecodeError as exc:
        raise _fail("", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # the C parser recurses once per nesting level
        raise _fail("", f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise _fail("", f"nested more than {MAX_JSON_DEPTH} levels deep")
    return validate_attributes(data)


def load_attributes(path: Path) -> AttributeFile:
    """Read and validate an attributes file.

    Any problem (missing, unreadable, not UTF-8, not JSON, wrong shape) is an
    :class:`InvalidInputError` whose one-line message starts with the file name.
    """
    path = Path(path)
    text = read_user_text(path, missing_hint="check the path, or create it with `biomedvr attributes`",
                          folder_hint="give the attributes JSON file")
    try:
        return parse_attributes_text(text)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path.name}: {exc.message}", exc.hint) from None


def save_attributes(attrs: AttributeFile, path: Path, *, force: bool) -> None:
    """Write ``attrs`` to ``path`` atomically; refuses to replace an existing file without ``force``."""
    # Re-validate so that nothing we write can fail to load later.
    validate_attributes(attrs.to_dict())
    write_text_atomic(Path(path), attrs.to_json(), force=force)


class _DuplicateKey(ValueError):
    """A key given twice, by its place only: keys are class names not yet through the identifier check."""

    def __init__(self, position: int, count: int) -> None:
        super().__init__(f"key {position} of {count}")
        self.position, self.count = position, count


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for position, (key, value) in enumerate(pairs, start=1):
        if key in out:
            raise _DuplicateKey(position, len(pairs))
        out[key] = value
    return out


def _unknown_key(keys: list[str], unknown: str, expected: tuple[str, ...] | frozenset[str],
                 what: str = "key") -> str:
    """An unknown key named by its place (its text may be anything a person pasted, a name say),
    with the expected key it is closest to when it looks like a typo of one."""
    import difflib

    close = difflib.get_close_matches(unknown, sorted(expected), n=1, cutoff=0.75)
    hint = f" (did you mean {json.dumps(close[0])}?)" if close else ""
    return f"unknown {what}: key {keys.index(unknown) + 1} of {len(keys)}{hint}"


def _shown_version(version: Any) -> str:
    """A schema_version as the error may show it: numbers as they are, any text only by its type."""
    if version is None or isinstance(version, (bool, int, float)):
        return json.dumps(version)
    return f"{_json_type(version)}, not a number"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
