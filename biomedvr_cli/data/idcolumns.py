"""Which CSV column groups images by patient, when the user did not name one.

A manifest from a hospital export rarely has a column called ``group``; it has
``PatientID``, ``patient_id``, ``SubjectID``, ``MRN``, ``StudyInstanceUID`` or
``AccessionNumber``. Images of one patient (or one exam) must stay on one side of every
split, so a column that looks like such an id is used for grouping, and the user is told
which one and how to choose (``--group-column NAME``, or ``none``).

Only the column *names* are read here; values (the ids themselves) are never printed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# The word that says what a column identifies, coarsest first: grouping by the patient
# also keeps each exam together, grouping by the exam does not keep a patient together.
_LEVELS = (
    ("patient", ("patient", "subject", "participant", "mrn", "donor", "individual", "person", "pat", "pt", "record")),
    # Images of one lesion, slide or specimen (HAM10000's lesion_id, tiles of one slide) belong together too.
    ("case", ("case", "lesion", "slide", "specimen")),
    ("study", ("study", "accession", "exam", "examination", "visit", "encounter")),
)
# Words that make "<level word> ..." an identifier rather than an attribute (patient_age is not).
_ID_WORDS = frozenset({"id", "uid", "ids", "number", "no", "nr", "num", "key", "code", "identifier", "name", "ref"})
# Level words that are identifiers on their own. "case" and "study" are not ("case" may be a
# case/control label, "study" a source data set's name).
_BARE_IDS = frozenset({"patient", "subject", "participant", "mrn", "accession", "donor"})
# What to call each level in messages.
_LEVEL_NAMES = {"patient": "a patient id", "case": "a case id", "study": "a study or exam id"}


@dataclass(frozen=True)
class IdColumn:
    """A header column that looks like an identifier: where it is and what it identifies."""

    index: int
    name: str
    level: str  # "patient" | "case" | "study"

    @property
    def description(self) -> str:
        """``a patient id`` and the like, for messages."""
        return _LEVEL_NAMES[self.level]


def _words(name: str) -> list[str]:
    """``StudyInstanceUID`` -> study, instance, uid; ``patient_id`` -> patient, id; ``MRN`` -> mrn.

    A name in one case with no separator (``PATIENTID``, ``patientid``, ``studyinstanceuid``:
    spreadsheets and SQL exports lower or raise every header) is split where a level word
    begins it and an id word ends it.
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    words = [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]
    return [part for word in words for part in _split_joined(word)]


_STEMS = tuple(sorted({stem for _, stems in _LEVELS for stem in stems}, key=len, reverse=True))
_ID_ENDINGS = tuple(sorted(_ID_WORDS, key=len, reverse=True))


def _split_joined(word: str) -> list[str]:
    if any(word == stem for stem in _STEMS) or word in _ID_WORDS:
        return [word]
    for stem in _STEMS:
        rest = word[len(stem):]
        if word.startswith(stem) and len(stem) >= 3 and rest and rest.endswith(_ID_ENDINGS):
            ending = next(e for e in _ID_ENDINGS if rest.endswith(e))
            return [stem, ending]
    return [word]


def _level(name: str) -> str | None:
    words = _words(name)
    for level, stems in _LEVELS:
        for i, word in enumerate(words):
            if word not in stems:
                continue
            rest = set(words[:i] + words[i + 1:])
            if rest & _ID_WORDS or (not rest and word in _BARE_IDS):
                return level
    return None


def id_columns(header: list[str], skip: set[int]) -> list[IdColumn]:
    """Columns (other than the indices in ``skip``) that look like ids, coarsest level first, then leftmost."""
    found = [IdColumn(i, name, level) for i, name in enumerate(header)
             if i not in skip and (level := _level(name)) is not None]
    order = {level: rank for rank, (level, _) in enumerate(_LEVELS)}
    return sorted(found, key=lambda c: (order[c.level], c.index))


def grouping_notice(source: str, chosen: IdColumn, others: list[IdColumn]) -> str:
    """The warning shown when an id-like column is used for grouping without being named."""
    also = f" (also id-like: {', '.join(repr(c.name) for c in others[:3])})" if others else ""
    return (f"{source}: images are grouped by column {chosen.name!r}, which looks like {chosen.description}{also}, so "
            "that no group has images in more than one of training, validation and test; pass "
            f"--group-column {shlex.quote(chosen.name)} to confirm (and silence this), --group-column NAME to group by another "
            "column, or --group-column none to not group")
