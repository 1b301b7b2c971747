"""Versioned prompt templates from the top-level ``prompts/`` folder (packaged in wheels).

A prompt version is a folder (``prompts/attributes-v1/``) with ``system.txt``,
``user.txt``, ``retry.txt`` and ``reply.schema.json``. Templates use ``string.Template``
placeholders (``${class_name}``) because the JSON examples in them are full of braces.
The version name and a hash of the folder's files go into the cache key and the output's
provenance, so editing a template can never reuse replies to the old text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from biomedvr_cli.errors import BiomedVRError

PROMPT_VERSION = "attributes-v1"
# A wheel carries the templates inside the package (setup.py copies them at build time); a
# source checkout or editable install reads the top-level prompts/ folder in place.
_PACKAGED_PROMPTS = Path(__file__).resolve().parents[1] / "_prompts"
_SOURCE_PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
PROMPTS_DIR = _PACKAGED_PROMPTS if _PACKAGED_PROMPTS.is_dir() else _SOURCE_PROMPTS
_FILES = ("system.txt", "user.txt", "retry.txt", "reply.schema.json")
# Said in the prompt when the user gave no --task; generic on purpose.
DEFAULT_TASK_TEXT = "biomedical images"


@dataclass(frozen=True)
class PromptSet:
    """One prompt version, loaded and checked."""

    version: str
    system: str
    user: Template
    retry: Template
    reply_schema: dict[str, Any]
    sha256: str


@dataclass(frozen=True)
class PromptRequest:
    """Exactly what is sent for one class: the system text and the user text."""

    class_name: str
    system: str
    user: str


def load_prompts(version: str = PROMPT_VERSION, root: Path | None = None) -> PromptSet:
    """Load and check the templates of ``version``; a broken install is a BiomedVRError (exit 1)."""
    folder = (root or PROMPTS_DIR) / version
    texts: dict[str, str] = {}
    digest = hashlib.sha256(version.encode("utf-8"))
    for name in _FILES:
        path = folder / name
        try:
            data = path.read_bytes()
        except OSError:
            raise BiomedVRError(
                f"prompt template {version}/{name} is missing from {folder.parent.name}/",
                "reinstall biomedvr (a wheel carries the templates in biomedvr_cli/_prompts/, a source checkout in prompts/)",
            ) from None
        digest.update(name.encode("utf-8") + b"\0" + data + b"\0")
        texts[name] = data.decode("utf-8")
    try:
        schema = json.loads(texts["reply.schema.json"])
    except json.JSONDecodeError as exc:
        raise BiomedVRError(f"prompts/{version}/reply.schema.json is not valid JSON: {exc.msg}") from None
    prompts = PromptSet(
        version=version,
        system=texts["system.txt"].strip(),
        user=Template(texts["user.txt"].strip()),
        retry=Template(texts["retry.txt"].strip()),
        reply_schema=schema,
        sha256=digest.hexdigest(),
    )
    # Render once with dummy values so a typo in a placeholder fails here, not mid-run.
    render_request(prompts, "a", ["a", "b"], "", 1)
    render_retry(prompts, "x", 1)
    return prompts


def _substitute(template: Template, name: str, values: dict[str, str]) -> str:
    try:
        return template.substitute(values)
    except (KeyError, ValueError) as exc:
        raise BiomedVRError(
            f"prompt template {name} has an unknown or malformed placeholder ({exc})",
            "use only " + ", ".join("${" + key + "}" for key in sorted(values)),
        ) from None


def prompt_task_text(task: str) -> str:
    """The task as the prompt says it: trimmed, without a closing full stop, or the generic text."""
    return task.strip().rstrip(".").strip() or DEFAULT_TASK_TEXT


def task_key(task: str) -> str:
    """The task as a cache key sees it: two tasks that make the same prompt share one key.

    The generic text maps to "" (no --task), the form entries written before this rule used, so
    that their keys stay valid.
    """
    text = prompt_task_text(task)
    return "" if text == DEFAULT_TASK_TEXT else text


def render_request(prompts: PromptSet, class_name: str, classes: list[str], task: str, n: int) -> PromptRequest:
    """The request for one class; ``classes`` is the whole task's class list (order kept)."""
    others = [c for c in classes if c != class_name]
    values = {
        "class_name": class_name,
        "task": prompt_task_text(task),
        "other_classes": ", ".join(json.dumps(c, ensure_ascii=False) for c in others) or "none",
        "n": str(n),
    }
    return PromptRequest(class_name=class_name, system=prompts.system, user=_substitute(prompts.user, "user.txt", values))


def render_retry(prompts: PromptSet, error: str, n: int) -> str:
    """The follow-up message that states why a reply was rejected."""
    return _substitute(prompts.retry, "retry.txt", {"error": error.rstrip("."), "n": str(n)})
