"""Attributes library without any network: file format, class lists, privacy guard,
prompts, cache keys and the reference importer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biomedvr_cli.attributes import (
    AttributeFile,
    ClassAttributes,
    load_attributes,
    read_class_list,
    save_attributes,
    validate_attributes,
)
from biomedvr_cli.attributes import cache as cache_mod
from biomedvr_cli.attributes.generate import GenerationSettings, parse_reply, plan_generation, _ReplyInvalid
from biomedvr_cli.attributes.importer import import_reference
from biomedvr_cli.attributes.privacy import check_outgoing, find_identifier
from biomedvr_cli.attributes.prompts import PROMPT_VERSION, load_prompts
from biomedvr_cli.errors import InvalidInputError, OutputExistsError

EXAMPLE_CLASSES = Path(__file__).resolve().parents[1] / "examples" / "dermamnist" / "classes.txt"


def sentences(tag: str, n: int = 2) -> list[str]:
    return [f"{tag} sentence number {i} that is long enough" for i in range(n)]


def doc(**classes_override) -> dict:
    classes = {
        "benign": {
            "descriptive": sentences("benign descriptive"),
            "distinctive": sentences("benign distinctive"),
            "confusion": sentences("benign confusion"),
        },
        "malignant": {
            "descriptive": sentences("malignant descriptive"),
            "distinctive": sentences("malignant distinctive"),
            "confusion": sentences("malignant confusion"),
        },
    }
    classes.update(classes_override)
    return {"schema_version": 1, "task": "breast ultrasound", "classes": classes, "provenance": {"source": "test"}}


# ---------------------------------------------------------------- file format


def test_validate_roundtrip_and_public_types(tmp_path: Path) -> None:
    attrs = validate_attributes(doc())
    assert isinstance(attrs, AttributeFile)
    assert attrs.class_names == ["benign", "malignant"]
    assert isinstance(attrs.classes["benign"], ClassAttributes)
    assert isinstance(attrs.classes["benign"].confusion, tuple)
    path = tmp_path / "a.json"
    save_attributes(attrs, path, force=False)
    again = load_attributes(path)
    assert again == attrs
    assert again.content_hash() == attrs.content_hash()
    with pytest.raises(OutputExistsError):
        save_attributes(attrs, path, force=False)
    save_attributes(attrs, path, force=True)


def test_content_hash_ignores_class_order_task_and_provenance() -> None:
    a = validate_attributes(doc())
    d = doc()
    d["classes"] = dict(reversed(list(d["classes"].items())))
    d["task"] = "something else"
    d["provenance"] = {}
    b = validate_attributes(d)
    assert a.content_hash() == b.content_hash()
    d["classes"]["benign"]["confusion"][0] += " changed"
    assert validate_attributes(d).content_hash() != a.content_hash()


def test_sentences_are_stripped() -> None:
    d = doc()
    d["classes"]["benign"]["descriptive"][0] = "   padded sentence that is long enough   "
    attrs = validate_attributes(d)
    assert attrs.classes["benign"].descriptive[0] == "padded sentence that is long enough"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("schema_version"), "schema_version is missing"),
        (lambda d: d.update(schema_version=2), "schema_version: is 2"),
        (lambda d: d.update(extra=1), 'unknown top-level key: key 5 of 5'),
        (lambda d: d.update(classes={}), "classes: has 0 class(es); at least two are needed"),
        (lambda d: d.update(classes=[]), "classes: must be an object"),
        (lambda d: d["classes"]["benign"].pop("confusion"),
         'classes["benign"]: is missing the confusion set'),
        (lambda d: d["classes"]["benign"].update(descriptive=[]), 'classes["benign"].descriptive: is empty'),
        (lambda d: d["classes"]["benign"].update(descriptive="text"), "must be a list of sentences"),
        (lambda d: d["classes"]["benign"]["confusion"].append("too short"),
         'classes["benign"].confusion[2]: is 9 characters long; each sentence needs at least 20'),
        (lambda d: d["classes"]["benign"]["confusion"].append(d["classes"]["benign"]["confusion"][0].upper()),
         'classes["benign"].confusion[2]: repeats classes["benign"].confusion[0]'),
        (lambda d: d["classes"]["benign"]["confusion"].append(d["classes"]["benign"]["descriptive"][0]),
         'classes["benign"].confusion[2]: repeats classes["benign"].descriptive[0]'),
        (lambda d: d["classes"]["benign"].update(colour=[]), 'unknown key: key 4 of 4'),
        (lambda d: d["classes"]["benign"]["descriptive"].append(3), "descriptive[2]: must be a string, not a number"),
        (lambda d: d["classes"].update({"Benign": d["classes"]["malignant"]}), "duplicates class"),
        (lambda d: d["classes"].update({" x": d["classes"]["malignant"]}), "leading, trailing or repeated spaces"),
        (lambda d: d.update(task=3), "task: must be a string"),
        (lambda d: d.update(provenance=[]), "provenance: must be an object"),
    ],
)
def test_validation_errors_are_precise(mutate, expected: str) -> None:
    d = doc()
    mutate(d)
    with pytest.raises(InvalidInputError) as info:
        validate_attributes(d)
    assert expected in info.value.message
    assert info.value.exit_code == 3
    assert "\n" not in info.value.one_line()


def test_load_attributes_file_problems(tmp_path: Path) -> None:
    cases = {
        "missing.json": None,
        "bad.json": b"{not json",
        "latin.json": "{\"task\": \"caf\xe9\"}".encode("latin-1"),
        "dupkey.json": b'{"schema_version": 1, "schema_version": 1}',
        "list.json": b"[]",
    }
    expected = {
        "missing.json": "missing.json not found",
        "bad.json": "bad.json: not valid JSON",
        "latin.json": "latin.json is not valid UTF-8",
        "dupkey.json": 'key 2 of 2 in one object repeats an earlier key',
        "list.json": "the document must be a JSON object",
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(InvalidInputError) as info:
            load_attributes(path)
        assert expected[name] in info.value.message, name
    with pytest.raises(InvalidInputError, match="folder"):
        load_attributes(tmp_path)


# ---------------------------------------------------------------- classes.txt


def test_read_class_list_rules(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeff# comment\n\n  benign   tumor \r\nmalignant\n   # indented comment\nnormal\n".encode())
    assert read_class_list(path) == ["benign tumor", "malignant", "normal"]


def test_example_classes_file_is_dermamnist() -> None:
    names = read_class_list(EXAMPLE_CLASSES)
    assert len(names) == 7
    assert "melanoma" in names and "melanocytic nevus" in names


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "has no class names"),
        (b"# only a comment\n\n", "has no class names"),
        (b"benign\nmalignant\nBENIGN\n", 'line 3 "BENIGN" duplicates line 1 "benign"'),
        (b"benign\n\xff\xfe bad\n", "not valid UTF-8 (byte 0xff on line 2)"),
        (b"ben\x07ign\n", "control character U+0007"),
    ],
)
def test_read_class_list_errors(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "classes.txt"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError) as info:
        read_class_list(path)
    assert expected in info.value.message
    assert info.value.exit_code == 3


# ---------------------------------------------------------------- privacy guard


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("patient 1234567", "six or more digits"),
        ("MRN 20230115", "six or more digits"),
        ("scan 2023-01-15", "a date"),
        ("seen 03/04/2021", "a date"),
        ("12 March 2023 follow-up", "a date"),
        ("Jan 5, 2024", "a date"),
        ("john.doe@hospital.org", "an e-mail address"),
        ("https://pacs.example/study", "a URL"),
        ("www.example.org", "a URL"),
        ("/data/patients/x", "a file path"),
        ("C:\\scans\\a", "a file path"),
        ("~/scans", "a file path"),
        ("img_0001.dcm", "a file name"),
        ("123-45-6789", "an ID or phone number"),
        ("tab\there", "a control character"),
    ],
)
def test_privacy_guard_finds_identifiers(text: str, what: str) -> None:
    found = find_identifier(text)
    assert found is not None and what in found[0]


@pytest.mark.parametrize(
    "text",
    ["melanoma", "basal cell carcinoma", "T1/T2 weighted lesion", "benign / malignant", "grade 2", "Ki-67 20-30%",
     "COVID-19 pneumonia", "stage IV", "breast ultrasound", "class 3.5 mm nodule"],
)
def test_privacy_guard_allows_ordinary_names(text: str) -> None:
    assert find_identifier(text) is None


def test_check_outgoing_names_entry_and_never_quotes_it() -> None:
    with pytest.raises(InvalidInputError) as info:
        check_outgoing(["benign", "patient 1234567"], "")
    message = info.value.one_line()
    assert "class 2 of 2" in message and "six or more digits" in message
    assert "1234567" not in message and "patient" not in message.split(";")[0]
    with pytest.raises(InvalidInputError, match="--task"):
        check_outgoing(["a", "b"], "ultrasound for jane@x.org")
    with pytest.raises(InvalidInputError, match="characters long"):
        check_outgoing(["x" * 101, "b"], "")
    with pytest.raises(InvalidInputError, match="--task text is 301"):
        check_outgoing(["a", "b"], "y" * 301)
    check_outgoing(["benign", "malignant"], "breast ultrasound")


# ---------------------------------------------------------------- prompts and cache keys


def test_prompts_load_and_render() -> None:
    prompts = load_prompts()
    assert prompts.version == PROMPT_VERSION
    assert prompts.reply_schema["required"] == ["descriptive", "distinctive", "confusion"]
    plan = plan_generation(["benign", "malignant", "normal"], "breast ultrasound",
                           GenerationSettings(provider="anthropic", model="m", per_class=4))
    user = plan.requests[0].user
    assert 'Target class: "benign"' in user
    assert '"malignant", "normal"' in user and "4 strings" in user
    assert "breast ultrasound" in user and "${" not in user
    assert "confus" in user
    assert plan.requests[0].system == prompts.system


def test_broken_template_is_reported(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[1] / "prompts" / PROMPT_VERSION
    dst = tmp_path / PROMPT_VERSION
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    (dst / "user.txt").write_text("class ${klass}", encoding="utf-8")
    from biomedvr_cli.errors import BiomedVRError

    with pytest.raises(BiomedVRError, match="placeholder"):
        load_prompts(root=tmp_path)
    (dst / "user.txt").unlink()
    with pytest.raises(BiomedVRError, match="missing"):
        load_prompts(root=tmp_path)


def test_cache_key_depends_on_each_part_but_not_class_order() -> None:
    base = dict(provider="anthropic", model="m", prompt_version="v1", prompt_sha256="h", task="t",
                class_names=["a", "b"], per_class=5)
    key = cache_mod.cache_key(**base)
    assert cache_mod.cache_key(**{**base, "class_names": ["b", "a"]}) == key
    for change in [("provider", "bedrock"), ("model", "m2"), ("prompt_version", "v2"), ("prompt_sha256", "h2"),
                   ("task", "u"), ("class_names", ["a", "c"]), ("per_class", 4)]:
        assert cache_mod.cache_key(**{**base, change[0]: change[1]}) != key, change


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BIOMEDVR_CACHE_DIR", str(tmp_path / "c"))
    assert cache_mod.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BIOMEDVR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    import sys

    if sys.platform.startswith("linux"):
        assert cache_mod.default_cache_dir() == tmp_path / "xdg" / "biomedvr" / "attributes"


def test_cache_entry_roundtrip_and_corrupt_entry_is_reported(tmp_path: Path) -> None:
    attrs = validate_attributes(doc())
    assert cache_mod.read_entry(tmp_path, "k", ["malignant", "benign"]) is None  # no entry: a miss
    cache_mod.write_entry(tmp_path, "k", attrs)
    hit = cache_mod.read_entry(tmp_path, "k", ["malignant", "benign"])
    assert hit is not None and hit.class_names == ["malignant", "benign"]
    # The key covers the class names: other classes under the same key mean an edited entry.
    with pytest.raises(cache_mod.CorruptEntryError, match="not the ones asked for"):
        cache_mod.read_entry(tmp_path, "k", ["benign", "other"])
    cache_mod.entry_path(tmp_path, "k").write_text("{broken", encoding="utf-8")
    with pytest.raises(cache_mod.CorruptEntryError, match="corrupt .*not valid JSON") as info:
        cache_mod.read_entry(tmp_path, "k", ["benign", "malignant"])
    assert "--refresh" in info.value.hint and "attributes-k.json" in info.value.hint
    text = json.dumps(attrs.to_dict())
    assert str(tmp_path) not in text


# ---------------------------------------------------------------- reply parsing


def test_parse_reply_trims_extra_sentences_and_rejects_bad_ones() -> None:
    good = {k: sentences(k, 3) for k in ("descriptive", "distinctive", "confusion")}
    attrs = parse_reply(json.dumps(good), "end_turn", "benign", 2)
    assert len(attrs.descriptive) == 2
    with pytest.raises(_ReplyInvalid, match="has 3 sentences; 4 are needed"):
        parse_reply(json.dumps(good), "end_turn", "benign", 4)
    with pytest.raises(_ReplyInvalid, match="not valid JSON"):
        parse_reply("{oops", "end_turn", "benign", 2)
    with pytest.raises(_ReplyInvalid, match="cut off"):
        parse_reply(json.dumps(good), "max_tokens", "benign", 2)
    bad = dict(good, confusion=["short", "also short", "x"])
    with pytest.raises(_ReplyInvalid, match=r"^confusion\[0\]: is 5 characters long"):
        parse_reply(json.dumps(bad), "end_turn", "benign", 2)


# ---------------------------------------------------------------- importer


def _write_reference(folder: Path, data: dict[str, dict[str, list[str]]]) -> dict[str, Path]:
    paths = {}
    for set_name, content in data.items():
        paths[set_name] = folder / f"{set_name}.json"
        paths[set_name].write_text(json.dumps(content), encoding="utf-8")
    return paths


def test_import_reference_files(tmp_path: Path) -> None:
    ref = {
        s: {
            "Benign_Tumor": sentences(f"benign {s}", 3) + ["short one"],
            "malignant_tumor": sentences(f"malignant {s}", 3),
            "normal_tissue": sentences(f"normal {s}", 2),
        }
        for s in ("descriptive", "distinctive", "confusion")
    }
    paths = _write_reference(tmp_path, ref)
    report = import_reference(paths["descriptive"], paths["distinctive"], paths["confusion"])
    assert report.attributes.class_names == ["Benign Tumor", "malignant tumor", "normal tissue"]
    assert report.dropped_sentences == 3
    assert report.attributes.provenance["source"] == "import"

    chosen = import_reference(
        paths["descriptive"], paths["distinctive"], paths["confusion"],
        class_names=["malignant tumor", "benign tumor"], task="breast ultrasound",
    )
    assert chosen.attributes.class_names == ["malignant tumor", "benign tumor"]
    assert chosen.dropped_classes == ("normal tissue",)
    assert chosen.attributes.task == "breast ultrasound"

    with pytest.raises(InvalidInputError, match="no class matching \"cyst\"|no class matching 'cyst'"):
        import_reference(paths["descriptive"], paths["distinctive"], paths["confusion"], class_names=["cyst", "benign tumor"])

    ref["confusion"]["extra_class"] = sentences("x")
    paths = _write_reference(tmp_path, ref)
    with pytest.raises(InvalidInputError, match="extra class|'extra class'"):
        import_reference(paths["descriptive"], paths["distinctive"], paths["confusion"])
