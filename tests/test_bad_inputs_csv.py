"""Bad inputs, round 3 (issue 21): CSV manifests and class labels.

Rows run through the matrix of tests/test_bad_inputs.py (its World fixture, Row and checks:
one error line with a fix, the documented exit code, no traceback, nothing left behind).
Issue 21 groups: #3 (a huge repeated manifest), #7 (a CSV field over the csv module's
limit), #11 (an unclosed quote names its line, BASOPHIL/basophil, café in two Unicode
forms, all-corrupt images, local-dir:FILE).
"""

from __future__ import annotations

import json
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from biomedvr_cli.data import open_source
from biomedvr_cli.data.manifest import MAX_MANIFEST_ROWS
from biomedvr_cli.errors import InvalidInputError
from tests.conftest import make_color_tree
from tests.test_bad_inputs import Env, Row, _broken_png, _stderr_has, fit, world  # noqa: F401  (world: fixture)
from tests.test_bad_inputs import test_bad_input as run_row

CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")


def _manifest(env: Env, rows: list[str], header: str = "path,label") -> Path:
    """imgs/ (a colour tree) and m.csv beside it with these rows."""
    env.tree("imgs")
    return env.text("m.csv", "\n".join([header, *rows]) + "\n")


def _rows_of(env: Env, per_class: int = 4) -> list[str]:
    return [f"imgs/{c}/img{i:02d}.png,{c}" for c in ("alpha cell", "beta cell", "gamma cell") for i in range(per_class)]


def _million_repeats(env: Env) -> None:
    env.tree("imgs")
    row = "imgs/alpha cell/img00.png,alpha cell\n"
    env.text("m.csv", "path,label\n" + row * 1_000_000)


def _listed_twice(env: Env) -> None:
    rows = _rows_of(env)
    _manifest(env, rows + rows)


def _long_field(env: Env) -> None:
    _manifest(env, ["imgs/alpha cell/img00.png," + "x" * 200_000])


def _open_quote(env: Env) -> None:
    rows = _rows_of(env)
    rows[1] = '"' + rows[1]  # line 3 opens a quote that nothing closes
    _manifest(env, rows)


def _quote_closed_later(env: Env) -> None:
    rows = _rows_of(env)
    rows[1] = '"' + rows[1]  # line 3 opens a quoted path ...
    rows[3] = rows[3].replace(",", '",', 1)  # ... that line 5 closes: lines 3-5 read as one path
    _manifest(env, rows)


def _case_folders(env: Env) -> None:
    tree = env.tree("imgs")
    (tree / "alpha cell").rename(tree / "BASOPHIL")
    (tree / "beta cell").rename(tree / "basophil")


def _case_labels(env: Env) -> None:
    rows = [r.replace(",beta cell", ",BETA CELL") if r.endswith("img00.png,beta cell") else r for r in _rows_of(env)]
    _manifest(env, rows)


def _cafe_two_spellings(env: Env) -> None:
    rows = []
    for r in _rows_of(env):
        path, label = r.rsplit(",", 1)
        if label == "alpha cell":
            label = CAFE_NFD if path.endswith(("0.png", "2.png")) else CAFE_NFC
        rows.append(f"{path},{label}")
    _manifest(env, rows)


def _one_cafe_class(env: Env, result: Any) -> None:
    summary = json.loads(result.stdout)
    assert sorted(summary["classes"]) == sorted(["beta cell", CAFE_NFC, "gamma cell"])
    assert any("Unicode form" in w for w in summary["warnings"])


def _repeats_reported(env: Env, result: Any) -> None:
    assert "12 listed more than once in the manifest" in result.stderr, result.stderr
    assert "hidden, not images" not in result.stderr


def _all_broken(env: Env) -> None:
    tree = env.tree(per_class=4)
    for path in (tree / "alpha cell").glob("*.png"):
        _broken_png(env, path)


def _no_usable_claim(env: Env, result: Any) -> None:
    assert "usable" not in result.stderr, result.stderr


def _weights_file(env: Env) -> None:
    env.text("weights.safetensors", b"\0" * 64)


ROWS: list[Row] = [
    Row("fit-csv-million-repeated-rows (#3)", lambda e: fit(e, e.tmp / "m.csv"), 3,
        (f"more than {MAX_MANIFEST_ROWS:,} rows", "m.csv"), setup=_million_repeats,
        marks=(pytest.mark.slow,)),  # writes and reads a million rows: seconds, kept for the slow run
    Row("fit-csv-rows-listed-twice-are-repeats (#3)", lambda e: fit(e, e.tmp / "m.csv", "--val-shots", "1"), 0,
        setup=_listed_twice, check=_repeats_reported),
    Row("fit-csv-field-over-the-csv-limit (#7)", lambda e: fit(e, e.tmp / "m.csv"), 3,
        ("m.csv line 2", "131,072 characters"), setup=_long_field),
    Row("fit-csv-unclosed-quote-names-its-line (#11)", lambda e: fit(e, e.tmp / "m.csv"), 3,
        ("m.csv line 3", "never closed"), setup=_open_quote),
    Row("fit-csv-quote-closed-lines-later (#11)", lambda e: fit(e, e.tmp / "m.csv"), 3,
        ("m.csv line 3", "runs on to line 5"), setup=_quote_closed_later),
    Row("eval-csv-unclosed-quote (#11)", lambda e: ["eval", e.tmp / "m.csv", *e.ad], 3,
        ("m.csv line 3", "never closed"), setup=_open_quote),
    Row("predict-csv-unclosed-quote (#11)", lambda e: ["predict", e.tmp / "m.csv", *e.ad], 3,
        ("m.csv line 3", "never closed"), setup=_open_quote),
    Row("fit-class-folders-differ-in-case (#11)", lambda e: fit(e, e.tmp / "imgs"), 3,
        ("class folders", '"BASOPHIL"', '"basophil"', "letter case"), setup=_case_folders),
    Row("fit-csv-labels-differ-in-case (#11)", lambda e: fit(e, e.tmp / "m.csv"), 3,
        ('"BETA CELL"', '"beta cell"', "letter case"), setup=_case_labels),
    Row("fit-csv-cafe-in-two-unicode-forms-is-one-class (#11)",
        lambda e: fit(e, e.tmp / "m.csv", "--val-shots", "1", "--json"), 0,
        setup=_cafe_two_spellings, check=_one_cafe_class),
    Row("fit-all-images-of-a-class-corrupt (#11)", lambda e: fit(e, e.tmp / "imgs"), 3,
        ("alpha cell", "could not be read"), setup=_all_broken, check=_no_usable_claim),
    Row("fit-backbone-local-dir-is-a-file (#11)", lambda e: ["fit", e.w.tree, "--shots", "2", "--backbone",
                                                              f"local-dir:{e.tmp / 'weights.safetensors'}",
                                                              "--out", e.tmp / "out.safetensors"], 4,
        ("is a file, not a folder", "MODEL:FILE"), setup=_weights_file),
    Row("fit-csv-group-column-missing", lambda e: fit(e, e.tmp / "m.csv", "--group-column", "PatientID"), 3,
        ("no 'PatientID' column", "--group-column"), setup=lambda e: _manifest(e, _rows_of(e))),
    Row("fit-csv-split-column-missing", lambda e: fit(e, e.tmp / "m.csv", "--split-column", "fold"), 3,
        ("no 'fold' column", "--split-column"), setup=lambda e: _manifest(e, _rows_of(e))),
]


@pytest.mark.parametrize("row", [pytest.param(r, id=r.name, marks=r.marks) for r in ROWS])
def test_bad_csv_input(row: Row, world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    run_row(row, world, tmp_path, monkeypatch)


# ----------------------------------------------------------------------------- the data layer directly


def test_a_repeated_row_manifest_is_refused_before_any_file_check(tmp_path: Path, monkeypatch) -> None:
    from biomedvr_cli.data import manifest

    monkeypatch.setattr(manifest, "MAX_MANIFEST_ROWS", 1000)  # the real cap is exercised by the CLI row above
    make_color_tree(tmp_path / "imgs", per_class=1, size=16)
    row = "imgs/alpha cell/img00.png,alpha cell\n"
    (tmp_path / "m.csv").write_text("path,label\n" + row * 1001)
    checked: list[Path] = []
    monkeypatch.setattr(Path, "is_file", lambda self: checked.append(self) or True)
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="more than 1,000 rows") as info:
        open_source(tmp_path / "m.csv")
    assert time.perf_counter() - start < 5 and info.value.exit_code == 3
    assert not [p for p in checked if p.suffix == ".png"]  # refused while parsing, no per-row disk access
    (tmp_path / "m.csv").write_text("path,label\n" + row * 1000)  # at the cap: read, the repeats counted once each
    source = open_source(tmp_path / "m.csv")
    assert len(source.records) == 1 and source.skipped_summary().startswith("999 file(s)")


def test_a_manifest_over_the_byte_cap_is_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    from biomedvr_cli.data import manifest

    monkeypatch.setattr(manifest, "MAX_MANIFEST_BYTES", 1024)
    (tmp_path / "m.csv").write_text("path,label\n" + "a.png,x\n" * 500)
    with pytest.raises(InvalidInputError, match="is larger than the .* allowed for a CSV manifest"):
        open_source(tmp_path / "m.csv")


def test_folders_in_two_unicode_forms_are_one_class(tmp_path: Path) -> None:
    tree = make_color_tree(tmp_path / "imgs", per_class=2, size=16)
    (tree / "alpha cell").rename(tree / CAFE_NFC)
    (tree / "beta cell").rename(tree / CAFE_NFD)
    source = open_source(tree)
    assert source.classes == sorted([CAFE_NFC, "gamma cell"])
    assert sum(r.label == CAFE_NFC for r in source.records) == 4
    assert any("Unicode form" in n for n in source.notices)


def test_labels_use_the_class_list_rule(tmp_path: Path) -> None:
    """Folder names and CSV labels are compared as classes.txt names are: spacing collapsed, case ignored."""
    from biomedvr_cli.attributes.classlist import normalise_class_name
    from biomedvr_cli.data.labels import canonical_label

    for raw in ("  benign   tumor ", CAFE_NFD, "Ｆｕｌｌ"):
        assert canonical_label(raw) == normalise_class_name(raw)


def test_skipped_summary_counts_each_reason(tmp_path: Path) -> None:
    make_color_tree(tmp_path / "imgs", per_class=2, size=16)
    (tmp_path / "n.txt").write_text("x")
    rows = ["imgs/alpha cell/img00.png,a", "imgs/alpha cell/img00.png,a", "./imgs/alpha cell/img00.png,a",
            "gone.png,a", "n.txt,a", "imgs/beta cell/img00.png,b"]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    source = open_source(tmp_path / "m.csv")
    assert source.skipped_summary() == ("4 file(s) were skipped: 2 listed more than once in the manifest; "
                                        "1 listed in the manifest but not found; 1 not an image file")
