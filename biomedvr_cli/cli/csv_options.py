"""CSV manifest options that decide splits (``--group-column``, ``--split-column``), declared once.

Used by every command that draws or selects a split from a manifest: ``fit`` and ``benchmark`` (groups and
splits), ``eval`` (the split it scores). ``predict`` reads only the path column.
"""

from __future__ import annotations

from typing import Optional

import typer

from biomedvr_cli.cli.options import DATA
from biomedvr_cli.data.records import NO_GROUP

__all__ = ["NO_GROUP", "GroupColumnOption", "SplitColumnOption", "csv_columns"]

GroupColumnOption = typer.Option(
    None, "--group-column", metavar="NAME", rich_help_panel=DATA,
    help="CSV column with the patient (or study) id: no id has images in more than one of training, validation "
         "and test. Default: a 'group' column, else a column that looks like a patient/study id (PatientID, "
         "subject_id, StudyInstanceUID ...; a warning names it); 'none' turns grouping off.",
)
SplitColumnOption = typer.Option(
    "split", "--split-column", metavar="NAME", rich_help_panel=DATA,
    help="CSV column with each image's split (train, val or test); a column named here must exist.",
)


def csv_columns(path_column: str, label_column: str, group_column: Optional[str] = None, split_column: str = "split"):
    """CsvColumns from the column options (lazy import keeps --help fast)."""
    from biomedvr_cli.data import CsvColumns

    return CsvColumns(path=path_column, label=label_column, split=split_column, group=group_column)
