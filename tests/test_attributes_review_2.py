"""Second hostile review of attributes, privacy and export (session 14): every reproduced defect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biomedvr_cli.attributes.privacy import check_stored_text, find_identifier
from biomedvr_cli.errors import InvalidInputError
from tests.test_attributes_cli import FAST, Stub, env, run, stub, write_valid  # noqa: F401


@pytest.mark.parametrize("text", [
    "Mr Müller", "Dr Öztürk", "Mrs Ñúñez", "Dr Łukasz Nowak", "patient José García", "patient Zoë Smith",
    "Name: Renée Dubois", "patient JOSÉ GARCÍA", "patient Jean-Luc Picard", "patient: Anne-Marie Dupont",
    "Müller^Hans", "MÜLLER^HANS", "call (555) 123-4567", "seen 03 04 2021", "scan of 2021 03 04", "Mr McDonald"])
def test_names_in_any_latin_script_hyphenated_names_and_more_number_forms_are_identifiers(text: str) -> None:
    assert find_identifier(text) is not None


@pytest.mark.parametrize("text", [
    "Müller cells in the retina", "Schwann cells", "Langerhans cell histiocytosis", "Gram-positive cocci",
    "name of the Gram stain", "Reed-Sternberg cells", "cells per mm^3", "2-3 mitoses/10 HPF", "1.5-2.0 cm"])
def test_medical_words_with_accents_and_capitals_still_pass(text: str) -> None:
    assert find_identifier(text) is None


def test_a_dicom_person_name_is_masked_whole() -> None:
    assert find_identifier("Smith^John seen")[1] == "<name> seen"
    assert find_identifier("MÜLLER^HANS")[1] == "<name>"


def test_an_accented_name_never_reaches_the_request(env: Path, stub: Stub) -> None:  # noqa: F811
    result = run("--dry-run", "--class", "MÜLLER^HANS", "--class", "nevus", *FAST)
    assert result.exit_code == 3 and "MÜLLER" not in result.stderr + result.stdout
    result = run("--dry-run", "--class", "melanoma", "--class", "nevus", "--task", "dermoscopy of patient José García")
    assert result.exit_code == 3 and "José" not in result.stderr + result.stdout
    assert not stub.requests


def _document(env: Path) -> dict:  # noqa: F811
    write_valid(env / "a.json")
    return json.loads((env / "a.json").read_text())


def test_errors_about_keys_and_versions_never_quote_the_text(env: Path) -> None:  # noqa: F811
    doc = _document(env)
    secret = "Jane Doe MRN 12345678"
    first_class = next(iter(doc["classes"]))
    cases = {
        "top.json": {**doc, secret: 1},
        "class.json": {**doc, "classes": {**doc["classes"], first_class: {**doc["classes"][first_class], secret: []}}},
        "version.json": {**doc, "schema_version": secret},
    }
    for name, value in cases.items():
        (env / name).write_text(json.dumps(value), encoding="utf-8")
    text = json.dumps(doc)
    (env / "dup.json").write_text(text[:-1] + f', "{secret}": 1, "{secret}": 2}}', encoding="utf-8")
    n = len(doc)
    expected = {"top.json": f"unknown top-level key: key {n + 1} of {n + 1}", "class.json": "unknown key: key 4 of 4",
                "version.json": "is a string, not a number",
                "dup.json": f"key {n + 2} of {n + 2} in one object repeats an earlier key"}
    for name, words in expected.items():
        result = run("validate", name)
        assert result.exit_code == 3 and words in result.stderr, (name, result.stderr)
        assert "Jane" not in result.stderr and "12345678" not in result.stderr


def test_an_unknown_key_that_is_a_typo_gets_a_suggestion(env: Path) -> None:  # noqa: F811
    doc = _document(env)
    first = next(iter(doc["classes"]))
    entry = doc["classes"][first]
    entry["descriptve"] = entry.pop("descriptive")
    (env / "typo.json").write_text(json.dumps(doc), encoding="utf-8")
    result = run("validate", "typo.json")
    assert result.exit_code == 3 and '(did you mean "descriptive"?)' in result.stderr


@pytest.mark.parametrize(("provenance", "words"), [
    ({"model": "jane.doe@stmarys.nhs.uk"}, "provenance.model: must be a plain id"),
    ({"model": "MRN12345678"}, "provenance.model: must be a plain id"),
    ({"prompt_sha256": "MRN12345678"}, "provenance.prompt_sha256: must be a SHA-256 digest"),
    ({"imported_sha256": {"descriptive": "data/pt_0042/scan.dcm"}}, "must be a SHA-256 digest"),
    ({"created_at": "Jane Doe"}, "provenance.created_at: must be an ISO 8601 time"),
])
def test_technical_provenance_fields_hold_only_what_biomedvr_writes_there(env: Path, provenance: dict,  # noqa: F811
                                                                         words: str) -> None:
    doc = _document(env)
    doc["provenance"] = provenance
    (env / "p.json").write_text(json.dumps(doc), encoding="utf-8")
    result = run("validate", "p.json")
    assert result.exit_code == 3 and words in result.stderr, result.stderr
    for fragment in ("jane", "12345678", "pt_0042", "Jane"):
        assert fragment not in result.stderr


def test_technical_provenance_that_biomedvr_writes_still_loads(env: Path) -> None:  # noqa: F811
    doc = _document(env)
    for model in ("claude-haiku-4-5@20251001", "anthropic.claude-3-5-sonnet-20241022-v2:0",
                  "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude", "none"):
        doc["provenance"] = {"source": "import", "model": model, "created_at": "2026-12-07T10:00:00+00:00",
                             "imported_sha256": {"descriptive": "ab" * 32}, "prompt_sha256": "CD" * 32}
        (env / "p.json").write_text(json.dumps(doc), encoding="utf-8")
        assert run("validate", "p.json").exit_code == 0, model


@pytest.mark.parametrize("task", ["derm\u2028oscopy", "derm\x1foscopy", "derm\x1coscopy", "derm\u200boscopy"])
def test_control_and_format_characters_in_the_task_are_refused_not_dropped(env: Path, stub: Stub,  # noqa: F811
                                                                         task: str) -> None:
    result = run("--dry-run", "--class", "melanoma", "--class", "nevus", "--task", task)
    assert result.exit_code == 3 and "the --task text looks like it contains a control character" in result.stderr
    assert not stub.requests


def test_tabs_and_line_breaks_in_the_task_are_whitespace(env: Path, stub: Stub) -> None:  # noqa: F811
    result = run("--dry-run", "--class", "melanoma", "--class", "nevus", "--task", "skin\tlesions\n in\x0b\x0c\x85dermoscopy\r\n",
                 "--json")
    assert result.exit_code == 0, result.stderr
    assert "skin lesions in dermoscopy" in result.stdout


def test_import_refuses_a_control_character_in_the_task(env: Path) -> None:  # noqa: F811
    from biomedvr_cli.attributes.importer import import_reference

    with pytest.raises(InvalidInputError, match="--task text looks like it contains a control character"):
        import_reference(env / "d.json", env / "s.json", env / "c.json", task="derm\u2028oscopy")


def test_a_cache_that_cannot_be_written_says_only_the_cache_entry_was_lost(env: Path, stub: Stub) -> None:  # noqa: F811
    (env / "cachefile").write_text("x")
    result = run("--class", "benign", "--class", "malignant", "--per-class", "2", "--cache-dir", "cachefile",
                 "--out", "o.json", *FAST)
    assert result.exit_code == 0 and (env / "o.json").is_file()
    assert "only the cache entry was not stored" in result.stderr and "nothing was written" not in result.stderr


def test_an_import_whose_sentences_all_repeat_another_set_says_so(env: Path) -> None:  # noqa: F811
    from biomedvr_cli.attributes.importer import import_reference

    long = "a long enough sentence about the {} class"
    sets = {"d.json": {"benign": [long.format("first")], "malignant": [long.format("second")]},
            "s.json": {"benign": [long.format("first")], "malignant": [long.format("other")]},
            "c.json": {"benign": [long.format("third")], "malignant": [long.format("fourth")]}}
    for name, value in sets.items():
        (env / name).write_text(json.dumps(value), encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no sentence left after dropping 1 repeating a sentence of another set"):
        import_reference(env / "d.json", env / "s.json", env / "c.json")


def test_a_key_with_a_line_break_is_named_as_the_key_not_as_the_network(env: Path, stub: Stub,  # noqa: F811
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-bad\nkey")
    result = run("--class", "melanoma", "--class", "nevus", "--out", "g.json", *FAST)
    assert result.exit_code == 5 and "ANTHROPIC_API_KEY holds a space, line break" in result.stderr
    assert "sk-ant-bad" not in result.stderr and not stub.requests and not (env / "g.json").exists()


def test_check_stored_text_reports_a_unicode_name_by_place_only() -> None:
    with pytest.raises(InvalidInputError) as info:
        check_stored_text("class 1 of 2", "Dr Öztürk", why="stored", fix="rename it")
    assert "Öztürk" not in info.value.one_line() and "a name with a title" in info.value.one_line()


def test_a_mistyped_download_setting_is_refused_for_every_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.errors import UsageError

    monkeypatch.setenv("BIOMEDVR_ALLOW_DOWNLOAD", "nope")
    with pytest.raises(UsageError, match="BIOMEDVR_ALLOW_DOWNLOAD='nope' is neither on nor off"):
        load_backbone("sandbox")
