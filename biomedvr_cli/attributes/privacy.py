"""The guard on everything that leaves the machine: class names and the task text.

The same rules guard the class names an adapter stores (``check_stored_class_names``):
adapters are shared like attribute files and must hold no identifiers either.

Nothing else is ever sent to an LLM (no pixels, no file names, no DICOM headers). Class
names and the task are typed by people who may paste a patient's record number, a scan
date or a folder path by mistake, so both are checked before any request is built.
Refused: runs of six or more digits and ID-like digit groups, date-like strings,
e-mail addresses, URLs, file paths, control characters and over-long strings.

The error names the offending entry (by position, with the suspicious part masked) so
that the message itself does not copy the identifier into terminals or CI logs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from biomedvr_cli.errors import InvalidInputError

MAX_CLASS_NAME_CHARS = 100
MAX_TASK_CHARS = 300
# What an attributes file accepts as a class name; a stored name is not sent anywhere.
MAX_STORED_CLASS_NAME_CHARS = 200

_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?"
)
_FILE_EXT = (
    r"dcm|dicom|ima|png|jpe?g|tiff?|bmp|gif|webp|nii(?:\.gz)?|nrrd|mha|mhd|svs|ndpi|scn|mrxs"
    r"|csv|tsv|txt|json|xlsx?|h5|hdf5|npy|npz|pt|pth|ckpt|safetensors|zip|tar|gz|pdf"
)

# (pattern, what it looks like, mask). Order matters: the first match is reported.
_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.I), "an e-mail address", "<e-mail>"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S*|\bwww\.\S+", re.I), "a URL", "<URL>"),
    (re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"), "a date", "<date>"),
    (re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b"), "a date", "<date>"),
    (re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{2,4}}\b", re.I), "a date", "<date>"),
    (re.compile(rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b", re.I), "a date", "<date>"),
    (re.compile(rf"\b{_MONTH}\s+(?:19|20)\d{{2}}\b", re.I), "a date", "<date>"),
    (re.compile(r"\d{6,}"), "a run of six or more digits (like a record or accession number)", "<digits>"),
    # ID-like groups (social security, phone, MRN formats) that dodge the six-digit rule.
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3}[-. ]\d{3}[-. ]\d{4}\b"), "an ID or phone number", "<digits>"),
    (re.compile(r"(?:^|\s)(?:~|\.{1,2})?[/\\][^\s/\\]+"), "a file path", "<path>"),
    (re.compile(r"\b[a-z]:[\\/]", re.I), "a file path", "<path>"),
    (re.compile(r"\\"), "a file path (backslash)", "<path>"),
    (re.compile(r"[^\s/]+/[^\s/]+/[^\s/]+"), "a file path", "<path>"),
    (re.compile(rf"\S\.(?:{_FILE_EXT})\b", re.I), "a file name", "<file>"),
)


def find_identifier(text: str) -> tuple[str, str] | None:
    """Return ``(what, masked_text)`` for the first identifier-like part of ``text``, else None."""
    for ch in text:
        if unicodedata.category(ch) in {"Cc", "Cf"}:
            return "a control character", _mask_controls(text)
    for pattern, what, mask in _RULES:
        match = pattern.search(text)
        if match:
            start, end = match.span()
            start += len(match.group(0)) - len(match.group(0).lstrip())
            if mask in ("<path>", "<file>"):
                # Mask the whole whitespace-delimited token: "/home/u/x" must not half-show.
                while start > 0 and not text[start - 1].isspace():
                    start -= 1
                while end < len(text) and not text[end].isspace():
                    end += 1
            return what, text[:start] + mask + text[end:]
    return None


def check_outgoing(class_names: Sequence[str], task: str) -> None:
    """Refuse class names or task text that could carry patient identifiers.

    Raises :class:`InvalidInputError` (exit 3) naming the entry; returns None when all
    of it may be sent.
    """
    total = len(class_names)
    for index, name in enumerate(class_names, start=1):
        label = f"class {index} of {total}"
        _check_one(label, name, MAX_CLASS_NAME_CHARS, "rename the class to its diagnosis or finding")
    if task:
        _check_one("the --task text", task, MAX_TASK_CHARS, "describe the imaging task in a few plain words")


_SENT_WHY = "only class names and the task text are sent to the LLM and they must not hold patient data"
_STORED_WHY = "class names are stored in the adapter, which must not hold patient data"


def check_stored_class_names(class_names: Sequence[str], source: str = "class") -> None:
    """Refuse class names that could carry patient identifiers before they go into an adapter.

    The same rules as :func:`check_outgoing` (adapters are shared like attribute files);
    ``source`` says where the names came from ("class folder", "label"). Raises
    :class:`InvalidInputError` (exit 3) naming the entry with the suspicious part masked.
    """
    total = len(class_names)
    for index, name in enumerate(class_names, start=1):
        _check_one(f"{source} {index} of {total}", name, MAX_STORED_CLASS_NAME_CHARS,
                   f"rename the {source} to its diagnosis or finding", why=_STORED_WHY, kept="stored")


def _check_one(label: str, text: str, limit: int, fix: str, *, why: str = _SENT_WHY, kept: str = "sent to the LLM") -> None:
    if len(text) > limit:
        raise InvalidInputError(f"{label} is {len(text)} characters long; at most {limit} may be {kept}", fix)
    found = find_identifier(text)
    if found is not None:
        what, masked = found
        raise InvalidInputError(f"{label} looks like it contains {what}: {_quote(masked)}; {why}", fix)


def _mask_controls(text: str) -> str:
    return "".join("<control>" if unicodedata.category(ch) in {"Cc", "Cf"} else ch for ch in text)


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'
