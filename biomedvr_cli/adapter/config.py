"""The adapter's config as typed records, with a JSON round trip.

Each section of the ``config`` JSON stored in the adapter's ``__metadata__`` is a small
dataclass. ``from_dict`` accepts files written by newer minor versions: keys it does not
know are dropped with a :class:`AdapterConfigWarning` (the way PEFT treats unknown keys),
while a missing required section is an :class:`AdapterError`. The method settings stay a
plain dict here, because the method layer (above this one) owns their meaning.
"""

from __future__ import annotations

import math
import unicodedata
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from biomedvr_cli.errors import AdapterError


class AdapterConfigWarning(UserWarning):
    """An adapter config holds keys this version does not know (written by a newer biomedvr)."""


@dataclass
class BackboneRecord:
    """Which frozen backbone the adapter was trained on."""

    label: str
    fingerprint: str
    logit_scale: float
    embed_dim: int
    model: str | None = None
    pretrained: str | None = None
    revision: str | None = None  # the hub commit of the weights (a pinned preset's); None: shipped/local or older adapter


@dataclass
class Preprocessing:
    """How images were turned into tensors before the VR module."""

    image_size: int
    mean: list[float]
    std: list[float]
    resize: str = "shorter side to image_size, centre crop"


@dataclass
class AttributeRecord:
    """The sentences scored, and where they came from."""

    source: str  # "file" | "class-name templates"
    sentences: dict[str, list[str]]
    task: str = ""
    hash: str | None = None


@dataclass
class TrainingRecord:
    """How the head was trained (never which files: only counts and a digest of identities)."""

    seed: int
    shots: int
    val_shots: int
    train_images: int
    val_images: int
    recipe: dict[str, Any]
    device: str = "cpu"
    seconds: float = 0.0
    image_hashes: list[str] = field(default_factory=list)  # salted pixel hashes of the fitted images (data/hashing.py)
    image_hash_salt: str = ""  # this adapter's random salt; "" in older adapters, whose hashes are of the files


@dataclass
class SelectionRecord:
    """How the kept state was chosen."""

    rule: str
    epoch: int
    split: str = "validation"
    vr: dict[str, Any] | None = None  # what the VR stage did (ran, epochs run, stopped early, kept, seconds)
    encoder_passes: int = 2  # image-encoder passes a prediction needs: 1 when the kept views are the plain image


@dataclass
class ValidationRecord:
    """Validation metrics of the kept state (None without a validation split)."""

    accuracy: float | None
    nll: float | None
    images: int
    # What the figures are: "validation" (held-out images the saved model never fitted), "cross-validation"
    # (the feature head's held-out folds over every labelled image; the saved head was refitted on all),
    # "validation-before-refit" (the selected state before its refit on every label), "none".
    kind: str = "validation"


@dataclass
class AdapterConfig:
    """Everything an adapter file says about itself (the ``config`` JSON, typed)."""

    biomedvr_version: str
    backbone: BackboneRecord
    preprocessing: Preprocessing
    classes: list[str]
    attributes: AttributeRecord
    method: dict[str, Any]
    training: TrainingRecord
    selection: SelectionRecord
    validation: ValidationRecord
    created_with: dict[str, str] = field(default_factory=dict)
    # Prediction-set and outlier calibration (method/trust.py owns its meaning; empty in older adapters).
    calibration: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, name: str = "adapter") -> AdapterConfig:
        """Typed config from the stored JSON; unknown keys warn, missing ones are an AdapterError."""
        sections = {
            "backbone": BackboneRecord, "preprocessing": Preprocessing, "attributes": AttributeRecord,
            "training": TrainingRecord, "selection": SelectionRecord, "validation": ValidationRecord,
        }
        values = _known(cls, data, name, "config")
        for key, record in sections.items():
            if key in values:
                if not isinstance(values[key], dict):
                    raise AdapterError(f"{name}: config section {key!r} is not an object", "refit the adapter")
                values[key] = _build(record, _known(record, values[key], name, key), name, key)
        config = _build(cls, values, name, "config")
        check_config(config, name)
        return config


_Record = TypeVar("_Record")
_TAMPERED = "the file is damaged or was edited; refit the adapter"


def _known(record: type, data: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    known = {f.name for f in fields(record)}
    unknown = sorted(set(data) - known)
    if unknown:
        warnings.warn(
            f"{name}: ignoring {where} key(s) {', '.join(unknown)} (written by a newer biomedvr?)",
            AdapterConfigWarning, stacklevel=3,
        )
    return {k: v for k, v in data.items() if k in known}


def _build(record: type[_Record], values: dict[str, Any], name: str, where: str) -> _Record:
    try:
        built = record(**values)
    except TypeError:
        missing = [f.name for f in fields(record)
                   if f.default is MISSING and f.default_factory is MISSING and f.name not in values]
        section = "config" if where == "config" else f"config section {where!r}"
        raise AdapterError(f"{name}: {section} lacks {missing}", "refit the adapter with this biomedvr") from None
    hints = get_type_hints(record)
    for key, value in values.items():  # sections arrive here already built, and match their type
        path = f"config.{key}" if where == "config" else f"config.{where}.{key}"
        wrong = _mismatch(value, hints[key], path)
        if wrong:
            raise AdapterError(f"{name}: {wrong}", _TAMPERED)
    return built


def _mismatch(value: Any, hint: Any, path: str) -> str | None:
    """None when a JSON value fits a field's annotation (str, int, float, bool, None, X | Y, list[X],
    dict[K, V], Any, a record); else what is wrong, naming the innermost place."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is list and isinstance(value, list):
        return next((w for i, v in enumerate(value) if (w := _mismatch(v, args[0], f"{path}[{i}]"))), None)
    if origin is dict and isinstance(value, dict):
        return next((w for k, v in value.items()
                     if (w := _mismatch(k, args[0], f"a key of {path}") or _mismatch(v, args[1], f"{path}[{k!r}]"))), None)
    return None if _fits(value, hint) else f"{path} is {_json_type(value)}, not {_type_name(hint)}"


def _fits(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin in (Union, UnionType):
        return any(_mismatch(value, arg, "") is None for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if hint in (int, float):  # JSON numbers: a float field takes 3, but true is not a number
        return isinstance(value, (int, hint)) and not isinstance(value, bool)
    if origin in (list, dict):
        return False  # a list or dict value was handled by _mismatch
    return isinstance(value, hint) if isinstance(hint, type) else False


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "").replace("NoneType", "null")


def _json_type(value: Any) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _controls(text: str, categories: tuple[str, ...]) -> str | None:
    """The first character of ``text`` in the given Unicode categories, as U+XXXX (never the raw character)."""
    bad = next((ch for ch in text if unicodedata.category(ch) in categories), None)
    return None if bad is None else f"U+{ord(bad):04X}"


def _leaves(value: Any, where: str):
    """Every string and number in a JSON value (keys too), with where it sits."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"a key of {where}", key  # checked before it is used in a path below
            yield from _leaves(item, f"{where}.{key}")
    else:
        yield where, value


def check_config(config: AdapterConfig, name: str = "adapter") -> None:
    """Refuse what no biomedvr writes and what would mislead when shown: exit 4 naming the field.

    Class names: at least one, each a non-empty string without control or format characters
    (terminal escape sequences, bidirectional overrides), and no two that read the same (after
    Unicode NFC normalisation). Every other string: no control or format characters (nor lone
    surrogates or line separators); every number finite.
    The backbone's ``embed_dim`` and ``image_size`` positive; the preprocessing mean and std three
    numbers each, std above zero.
    """
    classes = config.classes
    if not classes:
        raise AdapterError(f"{name}: config lists no classes", _TAMPERED)
    seen: dict[str, int] = {}
    for i, cls in enumerate(classes, start=1):
        bad = _controls(cls, ("Cc", "Cf"))
        if bad or not cls.strip():
            what = f"the control character {bad}" if bad else "no visible text"
            raise AdapterError(f"{name}: class {i} of {len(classes)} has {what}", _TAMPERED)
        key = unicodedata.normalize("NFC", cls)
        if key in seen:
            raise AdapterError(f"{name}: class {i} of {len(classes)} {cls!r} repeats class {seen[key]}", _TAMPERED)
        seen[key] = i
    for where, leaf in _leaves(config.to_dict(), "config"):
        # Format characters too (a bidirectional override would make `info` print text reversed); the
        # attribute files and class names an adapter is made from never hold one.
        bad = _controls(leaf, ("Cc", "Cf", "Cs", "Zl", "Zp")) if isinstance(leaf, str) else None
        if bad:
            raise AdapterError(f"{name}: {where} holds the control character {bad}", _TAMPERED)
        if isinstance(leaf, float) and not math.isfinite(leaf):  # Python's JSON reader takes NaN; no writer does
            raise AdapterError(f"{name}: {where} is {leaf}, not a finite number", _TAMPERED)
    _check_calibration(config.calibration, name)
    backbone, pre = config.backbone, config.preprocessing
    for where, value in (("backbone.embed_dim", backbone.embed_dim), ("preprocessing.image_size", pre.image_size)):
        if value < 1:
            raise AdapterError(f"{name}: config.{where} is {value}; it must be at least 1", _TAMPERED)
    for key, values in (("mean", pre.mean), ("std", pre.std)):
        if len(values) != 3 or (key == "std" and min(values) <= 0):
            raise AdapterError(f"{name}: config.preprocessing.{key} {values} is not three numbers"
                               + (" above zero" if key == "std" else ""), _TAMPERED)
    _check_stored_text(config, name)


_HEX = frozenset("0123456789abcdef")


def _check_stored_text(config: AdapterConfig, name: str) -> None:
    """What only an edit puts in an adapter: a backbone label that names a path or is no backbone (it
    would be loaded from there), a scale no backbone has, identifier-like class names or sentences (fit
    refuses them), hashes that are not hex."""
    from biomedvr_cli.attributes.privacy import MAX_STORED_CLASS_NAME_CHARS, find_identifier
    from biomedvr_cli.attributes.schema import MAX_SENTENCE_CHARS
    from biomedvr_cli.backbones.specs import stored_label_problem

    problem = stored_label_problem(config.backbone.label)
    if problem:
        raise AdapterError(f"{name}: config.backbone.label {problem}", _TAMPERED)
    if config.backbone.logit_scale <= 0:
        raise AdapterError(f"{name}: config.backbone.logit_scale is {config.backbone.logit_scale:g}; a backbone's "
                           "is above zero", _TAMPERED)
    texts = [(f"class {i} of {len(config.classes)}", c) for i, c in enumerate(config.classes, start=1)]
    texts += [(f"a {bank} sentence", t) for bank, items in config.attributes.sentences.items()
              for t in (items if isinstance(items, list) else []) if isinstance(t, str)]
    for where, text in texts:
        # Lengths first: no identifier rule ever reads more than fit could have stored.
        limit = MAX_STORED_CLASS_NAME_CHARS if where.startswith("class") else MAX_SENTENCE_CHARS
        if len(text) > limit:
            raise AdapterError(f"{name}: {where} is {len(text):,} characters long (fit stores at most {limit})",
                               _TAMPERED)
        found = find_identifier(text)
        if found:
            # Not blamed on an edit: an earlier biomedvr's checks may have let through what today's refuse.
            raise AdapterError(f"{name}: {where} looks like it holds {found[0]}, and adapters must not hold "
                               "patient data", "refit it from class names and an attributes file that hold none")
    training = config.training
    if set(training.image_hash_salt) - _HEX or any(not h or set(h) - _HEX for h in training.image_hashes):
        raise AdapterError(f"{name}: config.training holds an image hash or salt that is not hexadecimal", _TAMPERED)


# The calibration record (method/trust.py writes it): each field's test, and what it must be.
# Fields are checked when present; adapters written before calibration existed have none.
_WHOLE = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number of at least 1")
_TEXT = (lambda v: isinstance(v, str), "text")


def _number(low: float, high: float, *, low_open: bool = False, high_open: bool = False):
    def test(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    return test


_CALIBRATION_FIELDS: dict[str, dict[str, tuple[Any, str]]] = {
    "conformal": {"method": (lambda v: v in ("split", "cv+"), "split or cv+"), "score": _TEXT, "images": _WHOLE,
                  "folds": _WHOLE, "calibrated_on": _TEXT,
                  "max_level": (_number(0, 1, high_open=True), "a number from 0 up to (not including) 1"),
                  "caveat": _TEXT},
    "outliers": {"score": _TEXT, "images": _WHOLE,
                 "rate": (_number(0, 1, low_open=True, high_open=True), "a number between 0 and 1"),
                 "threshold": (_number(0, math.inf, high_open=True), "a number of at least 0")},
}


def _check_calibration(record: dict[str, Any], name: str) -> None:
    """Refuse a calibration record no biomedvr writes (exit 4 naming the field), so `info` and `predict` agree."""
    if "note" in record and not isinstance(record["note"], str):
        raise AdapterError(f"{name}: config.calibration.note is {_json_type(record['note'])}, not text", _TAMPERED)
    for part, fields in _CALIBRATION_FIELDS.items():
        if part not in record:
            continue
        entry = record[part]
        if not isinstance(entry, dict):
            raise AdapterError(f"{name}: config.calibration.{part} is {_json_type(entry)}, not an object", _TAMPERED)
        unknown = sorted(set(entry) - set(fields))
        if unknown:  # as for every other section: a newer writer's key, ignored with a word
            warnings.warn(f"{name}: ignoring calibration.{part} key(s) {', '.join(unknown)} (written by a newer "
                          "biomedvr?)", AdapterConfigWarning, stacklevel=4)
        for key, (test, wanted) in fields.items():
            if key in entry and not test(entry[key]):
                shown = repr(entry[key])[:40]
                raise AdapterError(f"{name}: config.calibration.{part}.{key} is {shown}; it must be {wanted}", _TAMPERED)
        if "images" not in entry:  # every calibration counts its images; the scores are checked against it
            raise AdapterError(f"{name}: config.calibration.{part} lacks its images count", _TAMPERED)
        n = entry["images"]
        if "max_level" in entry and abs(entry["max_level"] - n / (n + 1)) > 1e-6:
            raise AdapterError(f"{name}: config.calibration.{part}.max_level is {entry['max_level']}, but "
                               f"{n} images support at most {n / (n + 1):.6f}", _TAMPERED)
