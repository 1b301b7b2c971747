"""The method registry: every named method as data (``registry.json``), for ``fit`` and ``benchmark``.

An entry names a method and everything that defines it: the ``family`` (which fitting code
runs it: ``vr`` is BioMedVR's head and training loop, the others are baselines), the
``scorer`` (which sentences score the classes: ``attributes``, ``class-names`` or ``none``),
the training ``recipe`` and the ``settings`` (fields of :class:`MethodConfig`; a field not
named takes its default). Groups name lists of methods or of other groups. ``fit --method
NAME`` accepts the ``vr`` entries; ``benchmark --methods`` accepts them all. Importable
without torch (``--help`` reads the names).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from biomedvr_cli.errors import UsageError
from biomedvr_cli.method.config import MethodConfig
from biomedvr_cli.method.recipes import available_recipes

REGISTRY_PATH = Path(__file__).with_name("registry.json")
FAMILIES = ("zero-shot", "linear-probe", "coop", "vr")  # the fitting code: benchmark/methods.py RUNNERS
SCORERS = ("attributes", "class-names", "none")
# Which settings each family reads (zero-shot scoring uses only the k-nearest sentence counts).
_FAMILY_SETTINGS = {"vr": None, "zero-shot": ("k", "m"), "linear-probe": (), "coop": ()}
_ENTRY_KEYS = {"name", "family", "scorer", "recipe", "settings", "description"}


@dataclass(frozen=True)
class MethodSpec:
    """One registry entry: ``config`` for the ``vr`` and ``zero-shot`` families, ``recipe`` for ``vr``."""

    name: str
    family: str
    description: str
    scorer: str = "attributes"
    config: MethodConfig | None = None
    recipe: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)  # as the entry names them

    @property
    def needs_attributes(self) -> bool:
        return self.scorer == "attributes" and self.family in ("zero-shot", "vr")

    @property
    def shot_free(self) -> bool:
        return self.family == "zero-shot"

    @property
    def fittable(self) -> bool:
        """Whether ``biomedvr fit`` can write an adapter for it (BioMedVR's head: the ``vr`` family)."""
        return self.family == "vr"

    def fixed_values(self) -> dict[str, Any]:
        """Every setting the method fixes, by MethodConfig field name, plus ``recipe`` and ``scorer``."""
        values = {f.name: getattr(self.config, f.name) for f in fields(MethodConfig)} if self.config else {}
        return {**values, "recipe": self.recipe, "scorer": self.scorer}


@dataclass(frozen=True)
class Registry:
    """The methods in file order, the groups expanded to method names, and the default ``fit`` method."""

    methods: dict[str, MethodSpec]
    groups: dict[str, tuple[str, ...]]
    default: str

    def fit_methods(self) -> list[str]:
        """Names ``fit --method`` accepts, in file order."""
        return [name for name, spec in self.methods.items() if spec.fittable]


def _fail(where: str, what: str) -> UsageError:
    return UsageError(f"method registry {where}: {what}", f"fix {REGISTRY_PATH.name} (docs/method.md#the-method-registry)")


def _spec(entry: Any, recipes: list[str]) -> MethodSpec:
    """One entry checked and read; a bad one raises UsageError naming it."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise _fail("entry", f"each method must be an object with a name, got {entry!r:.80}")
    name = entry["name"]
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise _fail(name, f"unknown key(s) {', '.join(sorted(unknown))}")
    family, scorer = entry.get("family"), entry.get("scorer", "attributes")
    if family not in FAMILIES:
        raise _fail(name, f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if scorer not in SCORERS:
        raise _fail(name, f"scorer must be one of {', '.join(SCORERS)}, got {scorer!r}")
    if not isinstance(entry.get("description"), str) or not entry["description"]:
        raise _fail(name, "a description is required")
    settings = entry.get("settings", {})
    allowed = _FAMILY_SETTINGS[family]
    known = {f.name for f in fields(MethodConfig)} if allowed is None else set(allowed)
    if not isinstance(settings, dict) or set(settings) - known:
        bad = sorted(set(settings) - known) if isinstance(settings, dict) else settings
        raise _fail(name, f"settings {bad} are not settings of the {family} family")
    recipe = entry.get("recipe")
    if (family == "vr") != (recipe is not None) or (recipe is not None and recipe not in recipes):
        raise _fail(name, f"recipe {recipe!r}: a vr method names one of {', '.join(recipes)}; other families none")
    config = None
    if family in ("vr", "zero-shot"):
        try:
            config = MethodConfig(**settings)
        except (TypeError, ValueError) as exc:
            raise _fail(name, str(exc)) from None
    return MethodSpec(name, family, entry["description"], scorer, config, recipe, dict(settings))


def _expand(groups: dict[str, Any], methods: dict[str, MethodSpec]) -> dict[str, tuple[str, ...]]:
    """Each group as method names in order (a member may be a group listed before it), each once."""
    out: dict[str, tuple[str, ...]] = {}
    for group, members in groups.items():
        if group in methods or not isinstance(members, list) or not members:
            raise _fail(f"group {group!r}", "a group is a non-empty list and must not share a method's name")
        names: list[str] = []
        for member in members:
            if member in methods:
                names.append(member)
            elif member in out:
                names.extend(out[member])
            else:
                raise _fail(f"group {group!r}", f"{member!r} is neither a method nor a group listed above it")
        out[group] = tuple(dict.fromkeys(names))
    return out


def load_registry(path: Path = REGISTRY_PATH) -> Registry:
    """Read and check a registry file; every problem raises UsageError naming the entry."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail("file", f"cannot be read as JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("methods"), list):
        raise _fail("file", "must be an object with a list of methods")
    recipes = available_recipes()
    methods: dict[str, MethodSpec] = {}
    for entry in doc["methods"]:
        spec = _spec(entry, recipes)
        if spec.name in methods:
            raise _fail(spec.name, "the name is used twice")
        methods[spec.name] = spec
    if not isinstance(doc.get("groups", {}), dict):
        raise _fail("groups", "must be an object: group name -> list of methods or groups")
    groups = _expand(doc.get("groups", {}), methods)
    default = doc.get("default")
    if default not in methods or not methods[default].fittable:
        raise _fail("default", f"{default!r} must name a vr method")
    return Registry(methods, groups, default)


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The shipped registry, read once per process."""
    return load_registry()


def conflicts(spec: MethodSpec, given: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """Settings given explicitly (MethodConfig fields, ``recipe``, ``scorer``) that the method fixes otherwise.

    Each as (field, value given, the method's value); an equal value is no conflict.
    """
    fixed = spec.fixed_values()
    return [(name, value, fixed[name]) for name, value in given.items() if name in fixed and value != fixed[name]]
