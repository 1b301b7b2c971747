"""The one identifier check on every text that biomedvr sends or stores.

Sent (to the LLM): class names and the task text, nothing else (no pixels, no file names,
no DICOM headers). Stored: the class names, task text and every sentence of an attributes
file (``fit`` copies them into the adapter; the cache keeps them), LLM replies before they
are written, and benchmark dataset names (they become report fields and job file names).
All of these may be typed or pasted by people, or written by a model, and may carry a
patient's name, record number or scan date by mistake, so all go through
:func:`find_identifier` before they are used.

Refused: runs of six or more digits and ID-like digit groups, dates (numeric, "04-Mar-2021",
"March 4, 2021", "2021/03/04"), record labels (DOB, MRN, MRN12345, date of birth, patient ID,
...), names after a title ("Mr Smith", "Dr.Jones", "MRS JONES") or after "patient"/"name"
(also in capitals), e-mail addresses, URLs, file paths and names, characters that are not
plain text (controls, lone surrogates from undecodable bytes, line separators) and over-long
strings. The e-mail and path rules scan from their anchors ("@", words with two slashes),
so a long run of letters costs linear time, not quadratic. The rules are chosen
so that ordinary medical sentences pass ("ER/PR/HER2 positive", "2-3 mitoses/10 HPF",
"1.5-2.0 cm", "Reed-Sternberg cells"); the tests hold examples of both kinds.

An error names the offending entry by its place (class 2 of 5, ``classes["x"].confusion[2]``)
and the kind of identifier, never the text itself: what is not recognised as an identifier
(a bare name beside a date) must not be copied into terminals or CI logs either.
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
# Month names of the other languages records are often written in (French, German, Spanish, Italian,
# Portuguese, Dutch). Only in a full date with a day and a year: alone, "Mars", "Mai" or "Mayo" are
# words of other kinds.
_OTHER_MONTH = (
    r"(?:janvier|f[ée]vrier|mars|avril|mai|juin|juillet|ao[uû]t|septembre|octobre|novembre|d[ée]cembre"
    r"|januar|februar|m[äa]rz|april|juni|juli|august|september|oktober|november|dezember"
    r"|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre"
    r"|gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre"
    r"|janeiro|fevereiro|mar[çc]o|maio|junho|julho|setembro|outubro|novembro|dezembro"
    r"|januari|februari|maart|mei|augustus|oktober)"
)
_FILE_EXT = (
    r"dcm|dicom|ima|png|jpe?g|jfif|jpe|jif|tiff?|bmp|gif|webp|ppm|pgm|pbm|pnm|jp2|j2k|nii(?:\.gz)?|nrrd|mha|mhd|svs|ndpi|scn|mrxs"
    r"|csv|tsv|txt|json|xlsx?|h5|hdf5|npy|npz|pt|pth|ckpt|safetensors|zip|tar|gz|pdf"
)



def _letters(category: str) -> str:
    """Every Latin, Greek and Cyrillic letter of one Unicode category ("Lu", "Ll"), for a regex class:
    names are written "Müller", "Øztürk", "Łukasz", "Ñúñez" as often as "Smith"."""
    return "".join(re.escape(ch) for ch in map(chr, range(0x41, 0x530)) if unicodedata.category(ch) == category)


_UPPER, _LOWER = _letters("Lu"), _letters("Ll")
# A capitalised word; hyphenated ("Jean-Luc", "Anne-Marie") and inner capitals ("McDonald") included.
_NAME_WORD = rf"[{_UPPER}][{_LOWER}'\u2019-]+(?:[{_UPPER}][{_LOWER}'\u2019-]+)*"
# Words that make two capitalised words an eponymous disease or finding, not a person: "patient
# Creutzfeldt-Jakob Disease", "name: Guillain-Barré Syndrome", "patient Hodgkin Lymphoma".
_MEDICAL_NOUN = (r"(?i:diseases?|syndromes?|lymphomas?|sarcomas?|tumou?rs?|carcinomas?|leuka?emias?|cells?|bod(?:y|ies)"
                 r"|types?|stains?|staining|tests?|signs?|phenomen(?:on|a)|anomal(?:y|ies)|malformations?|palsy"
                 r"|fevers?|virus(?:es)?|infections?|reactions?|granules?|inclusions?|crystals?|nodes?|nodules?"
                 r"|cholera|biotypes?|strains?|serotypes?|\w+(?:itis|osis|oma|[ae]?emia|pathy|plasia|trophy))\b")
# Where a name ends: not inside a longer word, and not before a medical noun ("patient von Willebrand
# disease", "Patient Cornelia de Lange syndrome", "name: van Gieson stain" are eponyms, not people).
_NAME_END = rf"(?![\w'\u2019-])(?!\s+{_MEDICAL_NOUN})"
# Lower-case particles inside a name: "Mr. de la Cruz", "Dr van Gogh", "patient Ana dos Santos".
_PARTICLES = r"(?:(?:de|del|della|der|den|di|da|dos|das|du|la|le|van|von|ten|ter|bin|ibn|al|el|y)\s+){1,3}"
# Records and DICOM write names in capitals ("JOHN SMITH"); after "patient" / "name" those count too.
_ANY_CASE_NAME_WORD = rf"(?:{_NAME_WORD}|[{_UPPER}][{_UPPER}'\u2019-]+)"
_DATE = "a date"
_DD = r"(?:0[1-9]|[12]\d|3[01])"
_MM = r"(?:0[1-9]|1[0-2])"
# Characters that are not plain text: control and format characters, lone surrogates (bytes
# that were not UTF-8, as Python spells them), line and paragraph separators.
NOT_PLAIN_TEXT = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def not_plain_text(text: str) -> str | None:
    """The first character of ``text`` that is not plain text (see ``NOT_PLAIN_TEXT``), else None."""
    return next((ch for ch in text if unicodedata.category(ch) in NOT_PLAIN_TEXT), None)


def _not_plain_kind(ch: str) -> str:
    return "a character that is not valid text" if unicodedata.category(ch) == "Cs" else "a control character"

# (pattern, what it looks like, mask). Order matters: the first match is reported.
_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    # "scheme://..." is found by _url_span (from each "://", in linear time); "www." here.
    (re.compile(r"\bwww\.\S+", re.I), "a URL", "<URL>"),
    # Numeric dates use one separator throughout ("03/04/2021", "2021-03-04"), so that ranges
    # and counts such as "2-3/10 HPF" stay allowed.
    (re.compile(r"\b\d{4}([-/.])\d{1,2}\1\d{1,2}\b"), _DATE, "<date>"),
    (re.compile(r"\b\d{1,2}([-/.])\d{1,2}\1\d{2,4}\b"), _DATE, "<date>"),
    # Spaces as the separator only as dates are written: two-digit day and month in range and a
    # four-digit year ("03 04 2021", "2021 03 04"); counts such as "5 10 2000" stay allowed.
    (re.compile(rf"\b(?:{_DD} {_MM}|{_MM} {_DD}) (?:19|20)\d{{2}}\b|\b(?:19|20)\d{{2}} {_MM} {_DD}\b"), _DATE, "<date>"),
    # Dates with a month name: "04-Mar-2021", "4 March 2021", "04MAR2021", "Mar-04-2021",
    # "2021-Mar-04", "March 4, 2021", "March 2021".
    (re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of\s+|[-/.\s]?){_MONTH}(?:[-/.,]\s*|\s+)\d{{2,4}}\b", re.I),
     _DATE, "<date>"),
    (re.compile(rf"\b\d{{1,2}}{_MONTH}\d{{2,4}}\b", re.I), _DATE, "<date>"),
    (re.compile(rf"\b{_MONTH}[-/.]\d{{1,2}}[-/.]\d{{2,4}}\b", re.I), _DATE, "<date>"),
    (re.compile(rf"\b\d{{4}}[-/.]{_MONTH}[-/.]\d{{1,2}}\b", re.I), _DATE, "<date>"),
    (re.compile(rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b", re.I), _DATE, "<date>"),
    (re.compile(rf"\b{_MONTH}\s+(?:19|20)\d{{2}}\b", re.I), _DATE, "<date>"),
    # "1 janvier 1960", "1. Januar 1960", "1 de enero de 1960", "1er mars 1960"
    # (a four-digit year only: "1 mai 30 cells" is a count)
    (re.compile(rf"\b\d{{1,2}}(?:er|\.|[°º])?\s+(?:de\s+)?{_OTHER_MONTH}(?:\s+de)?\s+\d{{4}}\b", re.I),
     _DATE, "<date>"),
    (re.compile(r"\d{6,}"), "a run of six or more digits (like a record or accession number)", "<digits>"),
    # ID-like groups (social security, phone, MRN formats) that dodge the six-digit rule.
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3}[-. ]\d{3}[-. ]\d{4}\b|\(\d{3}\)\s?\d{3}-\d{4}\b"),
     "an ID or phone number", "<digits>"),
    # Labels that only ever introduce a patient's record: "DOB", "MRN", "date of birth", ...
    (re.compile(r"\b(?:d\.?o\.?b\b\.?|date\s+of\s+birth|birth\s*date|born\s+(?:on\s+|in\s+)?\d|mrn(?:\b|(?=\d))|"
                r"medical\s+record\s+(?:number|no\b)|nhs\s+(?:number|no\b)|ssn\b|social\s+security\s+number|"
                r"patient\s+(?:id|number)\b|(?:patient|record|accession|case)\s*(?:#|no\.|number)\s*\d)", re.I),
     "a patient record label (such as DOB, MRN or date of birth)", "<record>"),
    # A name after a title, or after "patient" / "name": case matters (titles and names are capitalised).
    # "Dr. Jones", "Dr.Jones", "Mr Smith", and in capitals "MRS JONES" (not "MR", "DR", "MS": MR imaging,
    # diabetic retinopathy and multiple sclerosis start many class names).
    (re.compile(rf"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof)\b(?:\.\s*|\s+)(?:{_PARTICLES})?{_NAME_WORD}"
                rf"|\b(?:MRS|MISS)\b\.?\s+[{_UPPER}][{_UPPER}'\u2019-]+\b"), "a name with a title", "<name>"),
    # One optional separator, so that "patient" before a long run of spaces costs linear time.
    (re.compile(rf"\b(?i:patient|name)\b(?:\s*[:#=-])?\s*(?:{_ANY_CASE_NAME_WORD}\s+(?:{_PARTICLES})?"
                rf"(?!{_MEDICAL_NOUN}){_ANY_CASE_NAME_WORD}|{_PARTICLES}{_NAME_WORD}){_NAME_END}"),
     "a patient name", "<name>"),
    # DICOM writes a person's name as Family^Given (PN): "Smith^John", "DOE^JANE^M".
    # Words on both sides: "mm^3" or "x^2" in a sentence is no name. Letters only (any script) before the
    # caret, so that the scan stays linear ("O'Neil^John" is still found from "Neil").
    (re.compile(rf"\b[^\W\d_]{{2,}}\^[{_UPPER}]\S*"), "a DICOM person name (Family^Given)", "<name>"),
    (re.compile(r"(?:^|\s)(?:~|\.{1,2})?[/\\][^\s/\\]+"), "a file path", "<path>"),
    (re.compile(r"\b[a-z]:[\\/]", re.I), "a file path", "<path>"),
    (re.compile(r"\\"), "a file path (backslash)", "<path>"),
    (re.compile(rf"\S\.(?:{_FILE_EXT})\b", re.I), "a file name", "<file>"),
)
# Relative paths (three or more parts) count only when a part looks like a file-system name,
# with an underscore or digits after lower-case letters ("scans/pt_01/a", "data/case12/img"):
# prose lists alternatives with slashes ("ER/PR/HER2 positive", "round/oval/irregular").
_RELATIVE_PATH = re.compile(r"[^\s/]+(?:/[^\s/]+){2,}")
_FILE_SYSTEM_PART = re.compile(r"_|[a-z]{2}\d")


# Around each "@": the part before and the domain after. Searched from the "@" signs only, so a
# long run of word characters costs linear time, not quadratic (a 16 MiB file must not hang).
_EMAIL_LOCAL_CHAR = re.compile(r"[\w.+-]")
# A dotted domain, or one of the host names mail systems inside a hospital use alone ("jsmith@localhost",
# "jdoe@mailhost"). Any other word after "@" is not an address: clinicians write "@" for "at"
# ("mitoses@HPF", "nodule@RUL") and model ids carry aliases ("some-model@latest").
_EMAIL_DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)+|(?i:localhost|mailhost|mailserver|mail|smtp|exchange)(?![\w-])")


def _email_span(text: str) -> tuple[int, int] | None:
    for at in (i for i, ch in enumerate(text) if ch == "@"):
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if domain and at > 0 and _EMAIL_LOCAL_CHAR.match(text, at - 1):
            start = at - 1
            while start > 0 and _EMAIL_LOCAL_CHAR.match(text, start - 1):
                start -= 1
            return start, domain.end()
    return None


_SCHEME_CHAR = re.compile(r"[a-z0-9+.-]", re.I)
_WORD_CHAR = re.compile(r"\w")


def _url_span(text: str) -> tuple[int, int] | None:
    r"""What ``\b[a-z][a-z0-9+.-]*://\S*`` (case-insensitive) finds first, found back from each "://":
    the scheme runs before two "://" never overlap, so a long run costs one pass, not one per letter."""
    at = text.find("://")
    while at != -1:
        start, position = None, at
        while position > 0 and _SCHEME_CHAR.match(text, position - 1):
            position -= 1
            boundary = position == 0 or not _WORD_CHAR.match(text, position - 1)
            if text[position].isascii() and text[position].isalpha() and boundary:
                start = position  # the leftmost letter at a word boundary wins, as in a regex search
        if start is not None:
            end = at + 3
            while end < len(text) and not text[end].isspace():
                end += 1
            return start, end
        at = text.find("://", at + 1)
    return None


def _relative_path_span(text: str) -> tuple[int, int] | None:
    """A run of three or more ``/``-joined parts in one word, one part named like a file-system name."""
    position = 0
    for word in text.split(" "):
        start, position = position, position + len(word) + 1
        if word.count("/") < 2:
            continue  # most words: no scan at all
        for match in _RELATIVE_PATH.finditer(word):
            if any(_FILE_SYSTEM_PART.search(part) for part in match.group(0).split("/")):
                return start + match.start(), start + match.end()
    return None


def find_identifier(text: str) -> tuple[str, str] | None:
    """Return ``(what, masked_text)`` for the first identifier-like part of ``text``, else None."""
    bad = not_plain_text(text)
    if bad is not None:
        return _not_plain_kind(bad), _mask_controls(text)
    found = _email_span(text) if "@" in text else None
    if found is not None:
        return "an e-mail address", text[: found[0]] + "<e-mail>" + text[found[1]:]
    found = _url_span(text) if "://" in text else None
    if found is not None:
        return "a URL", text[: found[0]] + "<URL>" + text[found[1]:]
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
    found = _relative_path_span(text) if text.count("/") >= 2 else None
    if found is not None:
        return "a file path", text[: found[0]] + "<path>" + text[found[1]:]
    return None


def find_identifier_in_id(value: str) -> str | None:
    """What kind of identifier a technical value (a model id, an ARN) holds, else None. Only the rules
    that cannot fire on an id's own dates, version numbers and path-like parts run: an e-mail address,
    a record label (``MRN12345678``) or a file name (``scan.dcm``)."""
    if "@" in value and _email_span(value) is not None:
        return "an e-mail address"
    return next((what for pattern, what, mask in _RULES if mask in ("<record>", "<file>") and pattern.search(value)),
                None)


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
# Attribute files are copied into adapters, caches and LLM outputs; the same words for all of them.
ATTRIBUTES_WHY = "attribute files are stored in adapters and caches, which must not hold patient data"


def check_stored_class_names(class_names: Sequence[str], source: str = "class") -> None:
    """Refuse class names that could carry patient identifiers before they go into an adapter.

    The same rules as :func:`check_outgoing` (adapters are shared like attribute files);
    ``source`` says where the names came from ("class folder", "label"). Raises
    :class:`InvalidInputError` (exit 3) naming the entry by position and the kind of identifier.
    """
    total = len(class_names)
    for index, name in enumerate(class_names, start=1):
        _check_one(f"{source} {index} of {total}", name, MAX_STORED_CLASS_NAME_CHARS,
                   f"rename the {source} to its diagnosis or finding", why=_STORED_WHY, kept="stored")


# Tabs and line breaks a pasted task may hold (tab, LF, CR, vertical tab, form feed, NEL) are whitespace.
_LINE_BREAKS = {ord(ch): " " for ch in "\t\n\r\v\f\x85"}


def plain_task(task: str, *, stored: bool = False) -> str:
    """The --task text as sent and stored: whitespace runs made one space. Tabs and line breaks (a
    pasted task) are whitespace; any other character that is not plain text (a control or format
    character, U+2028, U+2029) is refused first (exit 3), as in class names, not quietly dropped."""
    spaced = task.translate(_LINE_BREAKS)
    bad = not_plain_text(spaced)
    if bad is not None:
        why = ATTRIBUTES_WHY if stored else _SENT_WHY
        raise InvalidInputError(f"the --task text looks like it contains {_not_plain_kind(bad)}; {why}",
                                "describe the imaging task in a few plain words")
    return " ".join(spaced.split())


def check_stored_text(where: str, text: str, *, why: str, fix: str, limit: int | None = None) -> None:
    """Refuse one stored text (a sentence, a task, a dataset name) that could carry a patient identifier.

    ``where`` names the place without quoting the text (``classes["x"].confusion[2]``, ``task``,
    ``suite dataset #2 name``). Raises :class:`InvalidInputError` (exit 3) with the kind of
    identifier; the text itself is never part of the message.
    """
    _check_one(where, text, limit, fix, why=why, kept="stored")


def _check_one(label: str, text: str, limit: int | None, fix: str, *, why: str = _SENT_WHY,
               kept: str = "sent to the LLM") -> None:
    if limit is not None and len(text) > limit:
        raise InvalidInputError(f"{label} is {len(text)} characters long; at most {limit} may be {kept}", fix)
    found = find_identifier(text)
    if found is not None:
        # Position and kind only: a name that the rules do not recognise may sit beside the match.
        raise InvalidInputError(f"{label} looks like it contains {found[0]}; {why}", fix)


def _mask_controls(text: str) -> str:
    return "".join("<control>" if unicodedata.category(ch) in NOT_PLAIN_TEXT else ch for ch in text)
