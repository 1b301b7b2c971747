"""Defects a hostile review of `biomedvr attributes` found (2026-12-07, session 12), one test each.

Through the real anthropic SDK against the loopback stub of test_attributes_cli.py.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from biomedvr_cli.attributes import load_attributes, privacy
from biomedvr_cli.errors import InvalidInputError
from tests.test_attributes_cli import FAST, SETS, Recorded, Reply, Stub, cache_files, default_responder, env, good_sets  # noqa: F401
from tests.test_attributes_cli import message, run, stub, write_valid  # noqa: F401


def _sentences(cls: str, kind: str) -> list[str]:
    return [f"{kind} sentence number {i} for the {cls} class, clearly visible" for i in range(3)]


def _references(folder: Path, classes: tuple[str, ...] = ("benign_tumor", "malignant_tumor")) -> list[str]:
    for kind in SETS:
        (folder / f"{kind}.json").write_text(json.dumps({c: _sentences(c, kind) for c in classes}), encoding="utf-8")
    return ["import", "--descriptive", "descriptive.json", "--distinctive", "distinctive.json",
            "--confusion", "confusion.json"]


def _error_line(result) -> str:
    return " ".join(result.stderr.split())


def test_a_repeated_class_with_an_identifier_is_refused_by_the_identifier_check_without_quoting_it(
        env: Path, stub: Stub) -> None:
    (env / "dup.txt").write_text("benign\nMrs Jones DOB 1960-01-02\nmrs jones dob 1960-01-02\n", encoding="utf-8")
    for args in (["--classes", "dup.txt", "--dry-run"],
                 ["--class", "benign", "--class", "Mr Smith 2021-03-04", "--class", "MR SMITH 2021-03-04", "--dry-run"],
                 ["validate", "x.json", "--classes", "dup.txt"]):
        write_valid(env / "x.json")
        result = run(*args)
        assert result.exit_code == 3, result.stderr
        assert "Jones" not in result.stderr and "Smith" not in result.stderr and "19" not in result.stderr
    assert not stub.requests


def test_validate_checks_the_class_list_for_identifiers_before_comparing(env: Path) -> None:
    write_valid(env / "a.json")
    result = run("validate", "a.json", "--class", "benign", "--class", "malignant", "--class", "/home/jsmith/pt_0001")
    assert result.exit_code == 3 and "class 3 of 3 looks like it contains a file path" in _error_line(result)
    assert "jsmith" not in result.stderr


@pytest.mark.parametrize("out", ["descriptive.json", "classes.txt"])
def test_import_never_writes_over_one_of_its_inputs(env: Path, out: str) -> None:
    args = _references(env)
    (env / "classes.txt").write_text("benign tumor\nmalignant tumor\n", encoding="utf-8")
    before = (env / out).read_bytes()
    result = run(*args, "--classes", "classes.txt", "--out", out, "--force")
    assert result.exit_code == 2 and "is also an input of this run" in _error_line(result)
    assert (env / out).read_bytes() == before


def test_import_into_a_folder_says_so_at_once(env: Path) -> None:
    args = _references(env)
    (env / "adir").mkdir()
    result = run(*args, "--out", "adir")
    assert result.exit_code == 2 and "adir is a folder" in result.stderr and "--force" not in result.stderr


def test_a_key_given_twice_in_a_reference_file_is_an_error(env: Path) -> None:
    args = _references(env)
    first = json.dumps(_sentences("benign_tumor", "first"))
    (env / "descriptive.json").write_text(
        '{"benign_tumor": %s, "malignant_tumor": %s, "benign_tumor": %s}'
        % (first, json.dumps(_sentences("m", "x")), json.dumps(_sentences("b", "second"))), encoding="utf-8")
    result = run(*args, "--out", "o.json")
    assert result.exit_code == 3 and "key 3 of 3 in one object repeats an earlier key" in _error_line(result)
    assert not (env / "o.json").exists()


def test_a_lone_surrogate_is_refused_by_place_everywhere(env: Path) -> None:
    write_valid(env / "a.json")
    text = (env / "a.json").read_text().replace("plainly visible", "plainly \\ud800 visible", 1)
    (env / "s.json").write_text(text, encoding="utf-8")
    result = run("validate", "s.json")
    assert result.exit_code == 3 and 'classes["benign"].descriptive[0] looks like it contains a character that is ' \
        "not valid text" in _error_line(result)
    with pytest.raises(InvalidInputError, match="not valid text"):
        load_attributes(env / "s.json")
    args = _references(env)
    (env / "descriptive.json").write_text(
        json.dumps({"benign_tumor": ["a sentence with a lone \ud800 surrogate, clearly seen"],
                    "malignant_tumor": _sentences("m", "d")}), encoding="utf-8")
    imported = run(*args, "--out", "o.json")
    assert imported.exit_code == 3 and "not valid text" in imported.stderr and not (env / "o.json").exists()


def test_bytes_that_are_not_utf8_in_class_or_task_options_are_refused(env: Path, stub: Stub) -> None:
    name = b"mal\xffignant".decode("utf-8", "surrogateescape")  # how Python passes such an argv entry
    bad_class = run("--class", "benign", "--class", name, "--dry-run")
    assert bad_class.exit_code == 3 and "--class #2 contains a byte that is not UTF-8" in _error_line(bad_class)
    bad_task = run("--class", "benign", "--class", "malignant", "--task", "derm" + name[3], "--dry-run")
    assert bad_task.exit_code == 3 and "--task text looks like it contains a character that is not valid text" in \
        _error_line(bad_task)
    assert not stub.requests


def test_control_characters_in_a_classes_file_are_refused_not_taken_as_line_breaks(env: Path, stub: Stub) -> None:
    for separator in ("\x1c", "\x0c", "\x85", "\u2028"):
        (env / "fs.txt").write_text(f"benign{separator}malignant\nnormal\n", encoding="utf-8")
        result = run("--classes", "fs.txt", "--dry-run")
        assert result.exit_code == 3 and "fs.txt: line 1 contains the control character" in _error_line(result)
    (env / "crlf.txt").write_bytes(b"benign\r\nmalignant\rnormal\n")
    assert run("--classes", "crlf.txt", "--dry-run", "--json").exit_code == 0
    assert not stub.requests


@pytest.mark.parametrize("reply", ["[" * 5000 + "]" * 5000, '{"descriptive": ' + "9" * 5000 + "}"])
def test_an_odd_reply_is_asked_again_like_any_invalid_one(env: Path, stub: Stub, reply: str) -> None:
    def responder(req: Recorded, attempt: int) -> Reply:
        return Reply(body=message(reply)) if attempt == 1 else default_responder(req, attempt)

    stub.responder = responder
    result = run("--class", "benign", "--class", "malignant", "--per-class", "2", "--concurrency", "1", *FAST)
    assert result.exit_code == 0, result.stderr
    assert len(stub.requests) == 4  # each class asked twice: the odd reply, then a good one


def test_a_reply_that_is_not_json_blames_the_endpoint_not_the_key(env: Path, stub: Stub) -> None:
    stub.responder = lambda req, attempt: Reply(body=b"<html>proxy login</html>")
    result = run("--class", "benign", "--class", "malignant", *FAST)
    assert result.exit_code == 5
    line = _error_line(result)
    assert "is not an API reply" in line and "ANTHROPIC_BASE_URL" in line and "API_KEY" not in line


def test_a_class_list_too_long_for_one_run_is_refused_before_any_request(env: Path, stub: Stub) -> None:
    (env / "many.txt").write_text("\n".join(f"class {i:04d}x" for i in range(1001)) + "\n", encoding="utf-8")
    result = run("--classes", "many.txt", "--dry-run")
    assert result.exit_code == 3 and "1001 classes given; at most 1000" in _error_line(result)
    assert not stub.requests


@pytest.mark.parametrize("value", ["inf", "1e308", "0"])
def test_a_timeout_out_of_range_is_a_usage_error(env: Path, stub: Stub, value: str) -> None:
    result = run("--class", "benign", "--class", "malignant", "--timeout", value)
    assert result.exit_code == 2 and "--timeout" in result.stderr
    assert not stub.requests


def test_an_edited_cache_entry_is_corrupt_and_never_copied(env: Path, stub: Stub) -> None:
    assert run("--classes", "classes.txt", "--per-class", "2", *FAST).exit_code == 0
    (entry,) = cache_files(env)
    for edit, reason in ((lambda d: d.__setitem__("task", "chest x-ray"), "its task is not the one asked for"),
                         (lambda d: d["provenance"].__setitem__("per_class", 3), "provenance per_class"),
                         (lambda d: d["provenance"].__setitem__("note", "/home/jsmith/scan.dcm"), "a file path")):
        (env / "c.json").unlink(missing_ok=True)
        doc = json.loads(entry.read_text())
        edit(doc)
        entry.write_text(json.dumps(doc), encoding="utf-8")
        offline = run("--classes", "classes.txt", "--per-class", "2", "--out", "c.json", "--offline", *FAST)
        assert offline.exit_code == 3 and reason in _error_line(offline) and not (env / "c.json").exists()
        assert "jsmith" not in offline.stderr
        again = run("--classes", "classes.txt", "--per-class", "2", "--out", "c.json", "--force", *FAST)
        assert again.exit_code == 0 and "replaced a corrupt cache entry" in _error_line(again)
        assert load_attributes(env / "c.json").task == "" and "note" not in json.loads(entry.read_text())["provenance"]


def test_a_cache_that_cannot_be_written_is_not_named_as_written(env: Path, stub: Stub) -> None:
    (env / "cachefile").write_text("x")
    result = run("--class", "benign", "--class", "malignant", "--per-class", "2", "--cache-dir", "cachefile", *FAST)
    assert result.exit_code == 0, result.stderr
    line = _error_line(result)
    assert "cannot write the attributes cache" in line and "--cache-dir" in line
    assert not [row for row in result.stderr.splitlines() if row.startswith("cache: ")]
    as_json = run("--class", "benign", "--class", "malignant", "--per-class", "2", "--cache-dir", "cachefile",
                  "--out", "j.json", "--json", *FAST)
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["cache_file"] is None


def test_provenance_is_checked_before_validate_shows_it(env: Path) -> None:
    write_valid(env / "a.json")
    doc = json.loads((env / "a.json").read_text())
    for provenance, kind in (({"source": "/home/jsmith/MRN 1234567/scan.dcm"}, "provenance.source looks like"),
                             ({"source": "\x1b[2J\x1b[31mred"}, "a control character"),
                             ({"model": "/home/jsmith/x"}, "provenance.model: must be a plain id")):
        doc["provenance"] = provenance
        (env / "p.json").write_text(json.dumps(doc), encoding="utf-8")
        result = run("validate", "p.json")
        assert result.exit_code == 3 and kind in _error_line(result)
        assert "jsmith" not in result.stderr and "\x1b" not in result.stderr
    doc["provenance"] = {"source": "llm", "provider": "bedrock", "per_class": 5, "created_at": "2026-12-07T10:00:00+00:00",
                         "model": "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude",
                         "prompt_sha256": "ab" * 32, "biomedvr_version": "0.3.0"}
    (env / "p.json").write_text(json.dumps(doc), encoding="utf-8")
    assert run("validate", "p.json").exit_code == 0  # what biomedvr itself writes stays valid


def test_a_class_name_with_a_no_break_space_is_refused(env: Path) -> None:
    doc = {"schema_version": 1, "task": "t",
           "classes": {c: good_sets(c, 2) for c in ("melanoma", "basal\u00a0cell carcinoma")}}
    (env / "nbsp.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    result = run("validate", "nbsp.json")
    assert result.exit_code == 3 and "spaces other than the plain one" in _error_line(result)


@pytest.mark.parametrize("text, kind", [
    ("MRN12345 melanoma", "record label"), ("Dr.Smith lesion", "a name with a title"),
    ("patient: JOHN SMITH", "a patient name"), ("name=Jane Doe", "a patient name"),
    ("MRS JONES", "a name with a title"), ("seen by Dr. Jones", "a name with a title"),
])
def test_the_identifier_check_knows_the_common_record_forms(text: str, kind: str) -> None:
    found = privacy.find_identifier(text)
    assert found is not None and kind in found[0]


@pytest.mark.parametrize("text", ["MS lesion", "DR severe", "MR FLAIR hyperintensity", "Patient HER2 POSITIVE",
                                  "ER/PR/HER2 positive", "round/oval/irregular nuclei", "T2/FLAIR/DWI bright"])
def test_the_identifier_check_still_lets_medical_names_through(text: str) -> None:
    assert privacy.find_identifier(text) is None


def test_the_linear_e_mail_and_path_scans_find_what_the_plain_patterns_found() -> None:
    # dotted, or one of the hospital mail hosts alone
    email = re.compile(r"[\w.+-]+@(?:[\w-]+(?:\.[\w-]+)+|(?:localhost|mailhost|mailserver|mail|smtp|exchange)(?![\w-]))",
                       re.I)
    path = re.compile(r"[^\s/]+(?:/[^\s/]+){2,}")
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice([*"ab_1.@/- ", "mail", "localhost"]) for _ in range(rng.randint(1, 24)))
        want = email.search(text)
        assert privacy._email_span(text) == (want.span() if want else None), text
        plain = next((m.span() for m in path.finditer(text)
                      if any(privacy._FILE_SYSTEM_PART.search(p) for p in m.group(0).split("/"))), None)
        assert privacy._relative_path_span(text) == plain, text


def test_a_model_id_the_file_could_not_store_is_refused_before_any_request(env: Path, stub: Stub) -> None:
    result = run("--class", "benign", "--class", "malignant", "--model", "my model", *FAST)
    assert result.exit_code == 2 and "is not a model id" in _error_line(result)
    assert not stub.requests and not (env / "attributes.json").exists()


def test_schema_version_must_be_the_whole_number_one(env: Path) -> None:
    write_valid(env / "a.json")
    doc = json.loads((env / "a.json").read_text())
    doc["schema_version"] = 1.0
    (env / "v.json").write_text(json.dumps(doc), encoding="utf-8")
    result = run("validate", "v.json")
    assert result.exit_code == 3 and "schema_version" in result.stderr


def test_a_dicom_person_name_is_an_identifier_and_a_power_is_not() -> None:
    from biomedvr_cli.attributes.privacy import check_stored_text

    for text in ("Smith^John", "DOE^JANE^M", "lesion of Doe^J"):
        with pytest.raises(InvalidInputError, match="DICOM person name"):
            check_stored_text("class 1", text, why="stored", fix="rename it")
    for text in ("cells per mm^3", "x^2 growth", "basal cell carcinoma"):
        check_stored_text("class 1", text, why="stored", fix="rename it")


def test_the_linear_url_scan_finds_what_the_plain_pattern_found() -> None:
    url = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*", re.I)
    rng = random.Random(1)
    for _ in range(5000):
        text = "".join(rng.choice("aZ1_.+-:/ é") for _ in range(rng.randint(1, 24)))
        want = url.search(text)
        assert privacy._url_span(text) == (want.span() if want else None), text
    assert privacy.find_identifier("see https://x.org/a now")[1] == "see <URL> now"
