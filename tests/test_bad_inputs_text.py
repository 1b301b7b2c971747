"""Bad inputs, round 3 (issue 21), text and suites: groups 3 (suite part), 4, 7, 9 and parts of 11.

Each row reproduces a case of the issue through the harness of ``test_bad_inputs.py`` (exit
code, one ``error: ... (fix: ...)`` line holding the row's words, no traceback, nothing new
left behind after a failure). Rows about identifiers also check that no part of the
identifier reaches the output. Below the rows: the identifier rules on their own, on dates
and names they must catch and on ordinary medical sentences (and every shipped attributes
file) they must let through.
"""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from biomedvr_cli.attributes.privacy import find_identifier
from tests.conftest import TINY_CONFIG, write_color_attributes
from tests.test_bad_inputs import Env, Row, World, _edited_adapter, fit, predict, world  # noqa: F401  (world: fixture)
from tests.test_bad_inputs import test_bad_input as run_row

REPO = Path(__file__).resolve().parents[1]
PHI = "John Smith DOB 01/02/1960"
PHI_PARTS = ("John", "Smith", "1960", "12345678")


# ----------------------------------------------------------------------------- helpers


def _never_shown(*parts: str) -> Callable[[Env, Any], None]:
    """The row's check: no part of the identifier in stdout or stderr."""
    def check(env: Env, result: Any) -> None:
        output = result.stdout + result.stderr
        for part in parts:
            assert part not in output, f"{part!r} was shown: {output}"
    return check


def _attributes(env: Env, name: str = "attrs.json", *, task: str = "colour toy task",
                sentence: tuple[str, str, int, str] | None = None, extra_classes: dict | None = None) -> Path:
    """A valid attributes file for the world's tree, with the task or one sentence replaced."""
    path = write_color_attributes(env.tmp / name)
    doc = json.loads(path.read_text())
    doc["task"] = task
    if sentence is not None:
        cls, set_name, index, text = sentence
        doc["classes"][cls][set_name][index] = text
    doc["classes"].update(extra_classes or {})
    path.write_text(json.dumps(doc, ensure_ascii=False))
    return path


def _sets(colour: str) -> dict[str, list[str]]:
    return {"descriptive": [f"a cell stained {colour} all over"], "distinctive": [f"the one class that stains {colour}"],
            "confusion": [f"a cell tinted almost {colour} but not quite"]}


def _suite(env: Env, *, dataset: dict | None = None, name: str = "suite.json", **fields: Any) -> Path:
    """A suite file with one small sandbox dataset (changed by ``dataset``) and the given top-level fields."""
    entry = {"name": "blood", "sandbox_task": "blood-smear", "pool_per_class": 3, "test_per_class": 2}
    entry.update(dataset or {})
    doc = {"datasets": [entry], "backbone": "sandbox", "methods": ["zs-attributes"], **fields}
    return env.text(name, json.dumps(doc))


def _suite_text(env: Env, text: str) -> Path:
    return env.text("suite.json", text)


def bench(env: Env, *extra: Any) -> list[Any]:
    """``benchmark --suite tmp/suite.json --out tmp/out ...``."""
    return ["benchmark", "--suite", env.tmp / "suite.json", "--out", env.tmp / "out", *extra]


def _no_generation(env: Env) -> None:
    """Generating sandbox images is an error: a refused suite must be refused before any is drawn."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("sandbox images were generated for a suite that asks too much")

    env.monkeypatch.setattr("biomedvr_cli.sandbox.tasks.generate_task_arrays", refuse)


def _big_task(env: Env) -> None:
    """A task file like blood-smear at 256 px (the largest size a task may have)."""
    doc = json.loads((REPO / "biomedvr_cli/sandbox/tasks/blood-smear.json").read_text())
    doc["image_size"] = 256
    env.text("big-task.json", json.dumps(doc))
    _suite(env, dataset={"sandbox_task": "big-task.json", "pool_per_class": 5000, "test_per_class": 5000})
    _no_generation(env)


def _local_dir(env: Env, **vision: Any) -> Path:
    """A local-dir folder (an open_clip repo layout, no export manifest) whose vision_cfg is changed."""
    folder = env.tmp / "ld"
    folder.mkdir()
    weights = Path(env.w.spec.split(":", 1)[1])
    shutil.copyfile(weights, folder / "open_clip_model.safetensors")
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["vision_cfg"].update(vision)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    return folder


def _reference_files(env: Env, sentence: str = "a round cell with a pale nucleus") -> None:
    """The reference implementation's three files for two classes."""
    for set_name in ("descriptive", "distinctive", "confusion"):
        env.text(f"{set_name}.json", json.dumps({
            "alpha_cell": [f"{sentence} ({set_name} a)"], "beta_cell": [f"an oval cell with a dark nucleus ({set_name} b)"]}))


def _import(env: Env, *extra: Any) -> list[Any]:
    return ["attributes", "import", *(a for s in ("descriptive", "distinctive", "confusion")
                                      for a in (f"--{s}", env.tmp / f"{s}.json")),
            "--out", env.tmp / "out.json", *extra]


def _llm_replies_with(text: str) -> Callable[[Env], None]:
    """The LLM (replaced in-process) answers every request with ``text`` in its first sentence."""
    def setup(env: Env) -> None:
        from biomedvr_cli.attributes import provider

        def send(client: Any, **kwargs: Any) -> Any:
            return provider.Reply(json.dumps({"descriptive": [text], "distinctive": ["a cell unlike the others here"],
                                              "confusion": ["a cell easily taken for its neighbour"]}), "end_turn")

        env.monkeypatch.setattr(provider, "make_client", lambda *a, **k: object())
        env.monkeypatch.setattr(provider, "send", send)
    return setup


def _corrupt_cache(env: Env) -> None:
    """The cache entry that `attributes --class a --class b` would use, damaged."""
    from biomedvr_cli.attributes.cache import entry_path
    from biomedvr_cli.attributes.generate import GenerationSettings, plan_generation
    from biomedvr_cli.attributes.provider import default_model

    settings = GenerationSettings(provider="anthropic", model=default_model("anthropic"), per_class=1)  # as GEN asks
    plan = plan_generation(["a", "b"], "", settings)
    path = entry_path(env.tmp / "cache", plan.cache_key)
    path.parent.mkdir()
    path.write_text('{"schema_version": 1, "classes": {"a": ', encoding="utf-8")


def _owner_gap(tensors: dict) -> None:
    """Every sentence of class 2 handed to class 1: the class count still agrees, class 2 owns nothing."""
    for key in [k for k in tensors if k.startswith("owner_")]:
        owner = tensors[key].clone()
        owner[owner == 1] = 0
        tensors[key] = owner


def _five_thousand_digits(env: Env) -> None:
    """An otherwise valid attributes file whose schema_version is a 5000-digit number."""
    text = write_color_attributes(env.tmp / "a.json").read_text()
    env.text("a.json", text.replace('"schema_version": 1', '"schema_version": 1' + "0" * 4999))


GEN = ["attributes", "generate", "--per-class", "1"]

# ----------------------------------------------------------------------------- the rows

ROWS: list[Row] = [
    # --- group 3: sizes a suite file or option asks for, refused before allocating -------------
    Row("bench-suite-pool-per-class-1e9 (#3)", bench, 3,
        ("suite.json: datasets[0].pool_per_class", "1000000000", "5000"),
        setup=lambda e: (_suite(e, dataset={"pool_per_class": 10**9}), _no_generation(e))),
    Row("bench-suite-pool-per-class-float (#3)", bench, 3, ("datasets[0].pool_per_class", "whole number"),
        setup=lambda e: (_suite_text(e, '{"datasets": [{"name": "b", "sandbox_task": "blood-smear", '
                                        '"pool_per_class": 1e9}]}'), _no_generation(e))),
    Row("bench-suite-test-per-class-huge (#3)", bench, 3, ("datasets[0].test_per_class", "5000"),
        setup=lambda e: (_suite(e, dataset={"test_per_class": 10**7}), _no_generation(e))),
    Row("bench-suite-seeds-1e12 (#3)", bench, 3, ("suite.json: seeds", "1000000000000", "1 to 100"),
        setup=lambda e: _suite(e, seeds=10**12)),
    Row("bench-option-seeds-1e12 (#3)", lambda e: bench(e, "--seeds", "1000000000000"), 2, ("--seeds", "1 to 100"),
        setup=lambda e: _suite(e)),
    Row("bench-option-shots-huge (#3)", lambda e: bench(e, "--shots", "1,10000000"), 2, ("--shots", "1000"),
        setup=lambda e: _suite(e)),
    Row("bench-suite-too-many-datasets (#3)", bench, 3, ("datasets lists 101 entries", "at most 100"),
        setup=lambda e: _suite_text(e, json.dumps({"datasets": [{"name": f"d{i}", "sandbox_task": "blood-smear"}
                                                                 for i in range(101)]}))),
    Row("bench-too-many-jobs (#3)", lambda e: bench(e, "--methods", "all", "--seeds", "100"), 2,
        ("jobs", "at most 100000"),
        setup=lambda e: _suite_text(e, json.dumps({
            "datasets": [{"name": f"d{i}", "sandbox_task": "blood-smear"} for i in range(3)],
            "shots": list(range(1, 33))}))),
    Row("bench-sandbox-memory (#3)", bench, 3, ("blood", "gib of memory", "pool_per_class"), setup=_big_task),
    # --- group 4: identifiers, wherever a stored or sent text comes from ------------------------
    Row("fit-attributes-task-with-dob (#4)",
        lambda e: fit(e, None, "--attributes", e.tmp / "attrs.json"), 3,
        ("attrs.json: task", "a date", "stored in adapters"),
        setup=lambda e: _attributes(e, task=PHI), check=_never_shown(*PHI_PARTS)),
    Row("fit-attributes-sentence-with-mrn (#4)",
        lambda e: fit(e, None, "--attributes", e.tmp / "attrs.json"), 3,
        ('classes["beta cell"].confusion[0]', "record"),
        setup=lambda e: _attributes(e, sentence=("beta cell", "confusion", 0, "a green cell, MRN 12345 on the slide")),
        check=_never_shown("12345")),
    Row("fit-attributes-sentence-with-name (#4)",
        lambda e: fit(e, None, "--attributes", e.tmp / "attrs.json"), 3,
        ('classes["alpha cell"].descriptive[1]', "a name with a title"),
        setup=lambda e: _attributes(e, sentence=("alpha cell", "descriptive", 1, "the red cells Dr. Jones described")),
        check=_never_shown("Jones")),
    Row("fit-attributes-class-name-with-date (#4)",
        lambda e: fit(e, None, "--attributes", e.tmp / "attrs.json"), 3, ("classes: class 4 of 4", "a date"),
        setup=lambda e: _attributes(e, extra_classes={"Smith 04-Mar-2021": _sets("grey")}),
        check=_never_shown("Smith", "2021")),
    Row("validate-attributes-with-dob (#4)", lambda e: ["attributes", "validate", e.tmp / "attrs.json"], 3,
        ("attrs.json: task", "a date"), setup=lambda e: _attributes(e, task=PHI), check=_never_shown(*PHI_PARTS)),
    Row("validate-attributes-date-month-name (#4)", lambda e: ["attributes", "validate", e.tmp / "attrs.json"], 3,
        ('classes["gamma cell"].descriptive[0]', "a date"),
        setup=lambda e: _attributes(e, sentence=("gamma cell", "descriptive", 0, "blue cells seen March 4, 2021")),
        check=_never_shown("March 4")),
    Row("import-task-with-dob (#4)", lambda e: _import(e, "--task", PHI), 3, ("the --task text", "a date"),
        setup=_reference_files, check=_never_shown(*PHI_PARTS)),
    Row("import-sentence-with-date (#4)", _import, 3, ("descriptive.json", "sentence 1", "a date"),
        setup=lambda e: _reference_files(e, "04-Mar-2021 Smith: a round cell")),
    Row("attributes-llm-reply-with-identifiers (#4)",
        lambda e: [*GEN, "--class", "a", "--class", "b", "--cache-dir", e.tmp / "cache", "--out", e.tmp / "a.json"],
        5, ("failed validation twice", "looks like it contains", "nothing was written"),
        setup=_llm_replies_with("Patient John Smith, MRN 12345678, seen 04-Mar-2021: round cells"),
        check=_never_shown(*PHI_PARTS)),
    Row("bench-suite-dataset-name-with-date (#4)", bench, 3, ("suite.json: datasets[0].name", "a date", "job file"),
        setup=lambda e: _suite(e, dataset={"name": "John Smith 1970-01-02"}), check=_never_shown("John", "1970")),
    Row("bench-option-name-with-date (#4)",
        lambda e: ["benchmark", e.w.tree, "--name", "Jane Doe 04-Mar-2021", "--out", e.tmp / "out"], 3,
        ("--name", "a date"), check=_never_shown("Jane", "2021")),
    Row("bench-images-folder-with-date (#4)", lambda e: ["benchmark", e.tmp / "John Smith 1970-01-02", "--out",
                                                         e.tmp / "out"], 3, ("IMAGES folder", "a date"),
        setup=lambda e: e.tree("John Smith 1970-01-02"), check=_never_shown("1970")),
    # --- group 7: exit 1 where the input is at fault ---------------------------------------------
    Row("validate-attributes-5000-digit-number (#7)", lambda e: ["attributes", "validate", e.tmp / "a.json"], 3,
        ("a.json", "5000 digits"), setup=_five_thousand_digits),
    Row("fit-attributes-5000-digit-number (#7)", lambda e: fit(e, None, "--attributes", e.tmp / "a.json"), 3,
        ("a.json", "5000 digits"), setup=_five_thousand_digits),
    Row("bench-suite-backbone-number (#7)", bench, 3, ("suite.json: backbone", "string"),
        setup=lambda e: _suite(e, backbone=5)),
    Row("bench-epoch-scale-nan (#7)", lambda e: bench(e, "--epoch-scale", "nan"), 2, ("--epoch-scale", "nan"),
        setup=lambda e: _suite(e)),
    Row("bench-suite-epoch-scale-nan (#7)", bench, 3, ("suite.json", "nan"),
        setup=lambda e: _suite_text(e, '{"datasets": [{"name": "b", "sandbox_task": "blood-smear"}], "epoch_scale": NaN}')),
    # --- group 9: suite validation names the suite's field, exit 3 ------------------------------
    Row("bench-suite-shots-fraction (#9)", bench, 3, ("suite.json: shots[0]", "1.5", "whole number"),
        setup=lambda e: _suite(e, shots=[1.5])),
    Row("bench-suite-shots-true (#9)", bench, 3, ("suite.json: shots[0]", "true"), setup=lambda e: _suite(e, shots=[True])),
    Row("bench-suite-epochs-negative (#9)", bench, 3, ("suite.json: epochs", "-1"), setup=lambda e: _suite(e, epochs=-1)),
    Row("bench-suite-shots-zero (#9)", bench, 3, ("suite.json: shots[0]", "is 0"), setup=lambda e: _suite(e, shots=[0]),
        check=_never_shown("--shots")),
    Row("bench-suite-shots-negative (#9)", bench, 3, ("suite.json: shots[1]", "-2"),
        setup=lambda e: _suite(e, shots=[1, -2]), check=_never_shown("--shots")),
    Row("bench-suite-shots-empty (#9)", bench, 3, ("suite.json: shots", "empty"), setup=lambda e: _suite(e, shots=[]),
        check=_never_shown("--shots")),
    # --- group 11: messages that say what is wrong ---------------------------------------------
    Row("predict-adapter-class-without-sentences (#11)",
        lambda e: ["predict", e.w.good, "--adapter", e.tmp / "gap.safetensors", "--backbone", e.w.spec], 4,
        ("lists 3 classes", "class 2 of 3 has no sentences"),
        setup=lambda e: _edited_adapter(e.w.adapter, e.tmp / "gap.safetensors", tensors=_owner_gap)),
    Row("fit-local-dir-image-size-big (#11)", lambda e: fit(e, None, "--backbone", f"local-dir:{e.tmp / 'ld'}"), 4,
        ("open_clip_config.json", "model_cfg.vision_cfg.image_size", "whole number"),
        setup=lambda e: _local_dir(e, image_size="big")),
    Row("fit-local-dir-nested-config (#11)", lambda e: fit(e, None, "--backbone", f"local-dir:{e.tmp / 'ld'}"), 4,
        ("open_clip_config.json", "vision_cfg.width", "whole number"),
        setup=lambda e: _local_dir(e, width=[[[[32]]]])),
    Row("bench-suite-nested-field (#11)", bench, 3, ("suite.json: shots[0]", "a list"),
        setup=lambda e: _suite(e, shots=[[[[[1]]]]])),
    Row("attributes-offline-corrupt-cache (#11)",
        lambda e: [*GEN, "--class", "a", "--class", "b", "--offline", "--cache-dir", e.tmp / "cache",
                   "--out", e.tmp / "a.json"], 3, ("corrupt", "not valid json", "--refresh", "delete attributes-"),
        setup=_corrupt_cache),
    Row("info-adapter-missing-classes (#11)",
        lambda e: ["info", _edited_adapter(e.w.adapter, e.tmp / "nc.safetensors", config=lambda c: c.pop("classes"))],
        4, ("config lacks", "classes"), check=_never_shown("config config")),
    Row("attributes-classes-cafe-two-spellings (#11)", lambda e: [*GEN, "--dry-run", "--classes", e.tmp / "c.txt"], 3,
        ("line 2", "duplicates", "unicode"),
        setup=lambda e: e.text("c.txt", "caf\u00e9\n" + unicodedata.normalize("NFD", "caf\u00e9") + "\n")),
    Row("validate-attributes-cafe-two-spellings (#11)", lambda e: ["attributes", "validate", e.tmp / "attrs.json"], 3,
        ("duplicates", "unicode"),
        setup=lambda e: _attributes(e, extra_classes={"caf\u00e9": _sets("grey"),
                                                     unicodedata.normalize("NFD", "caf\u00e9"): _sets("white")})),
    Row("validate-attributes-case-duplicates (#11)", lambda e: ["attributes", "validate", e.tmp / "attrs.json"], 3,
        ('classes["basophil"]', "duplicates", "BASOPHIL"),
        setup=lambda e: _attributes(e, extra_classes={"BASOPHIL": _sets("grey"), "basophil": _sets("white")})),
    Row("attributes-classes-case-duplicates (#11)", lambda e: [*GEN, "--dry-run", "--classes", e.tmp / "c.txt"], 3,
        ("line 2", "duplicates", "ignoring case"), setup=lambda e: e.text("c.txt", "BASOPHIL\nbasophil\n")),
    Row("fit-seed-too-large (#11)", lambda e: fit(e, None, "--seed", "99999999999999999999"), 2,
        ("--seed", "4294967295"), check=_never_shown("frame")),
]


@pytest.mark.parametrize("row", [pytest.param(r, id=r.name, marks=r.marks) for r in ROWS])
def test_text_and_suite_row(row: Row, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    run_row(row, world, tmp_path, monkeypatch)


def test_rows_cover_each_defect_group() -> None:
    names = [r.name for r in ROWS]
    assert len(names) == len(set(names))
    for group in (3, 4, 7, 9, 11):
        assert any(f"(#{group})" in n for n in names), group


def test_an_identifier_in_an_attributes_file_never_reaches_an_adapter(world: World, tmp_path: Path) -> None:  # noqa: F811
    """fit refuses before the backbone loads; the adapter it would write does not exist."""
    from typer.testing import CliRunner

    from biomedvr_cli.cli.app import app

    attrs = write_color_attributes(tmp_path / "attrs.json")
    doc = json.loads(attrs.read_text())
    doc["classes"]["alpha cell"]["distinctive"].append("04-Mar-2021 Smith: a red cell")
    attrs.write_text(json.dumps(doc))
    result = CliRunner().invoke(app, ["fit", str(world.tree), "--shots", "2", "--backbone", world.spec, "--attributes",
                                      str(attrs), "--out", str(tmp_path / "a.safetensors")])
    assert result.exit_code == 3, result.stderr
    assert 'classes["alpha cell"].distinctive[1]' in result.stderr and "Smith" not in result.stderr
    assert not (tmp_path / "a.safetensors").exists()


# ----------------------------------------------------------------------------- the rules on their own


@pytest.mark.parametrize(("text", "what"), [
    ("John Smith DOB 01/02/1960", "a date"),
    ("John Smith DOB", "record label"),
    ("MRN 12345", "record label"),
    ("date of birth: 1 Jan", "record label"),
    ("patient ID 4471", "record label"),
    ("04-Mar-2021 Smith", "a date"),
    ("4 Mar 21", "a date"),
    ("04MAR2021", "a date"),
    ("Mar-04-2021", "a date"),
    ("2021-Mar-04", "a date"),
    ("March 4, 2021", "a date"),
    ("12th of March 2021", "a date"),
    ("2021/03/04", "a date"),
    ("03.04.2021", "a date"),
    ("Mr Smith", "a name with a title"),
    ("Mrs. O'Neil", "a name with a title"),
    ("seen by Dr. Jones", "a name with a title"),
    ("patient John Smith", "a patient name"),
    ("Name: Jane Doe", "a patient name"),
    ("scans/pt_01/a", "a file path"),
])
def test_identifiers_are_recognised(text: str, what: str) -> None:
    found = find_identifier(text)
    assert found is not None and what in found[0], (text, found)


ORDINARY = [
    "ER/PR/HER2 positive tumour cells in nests",
    "round/oval/irregular nuclei with coarse chromatin",
    "2-3 mitoses/10 HPF in the most active area",
    "a nodule of 1.5-2.0 cm with smooth margins",
    "Reed-Sternberg cells with owl-eye nucleoli",
    "hyperintense on T2/FLAIR/DWI sequences",
    "Ki-67 index of 20-30% in hot spots",
    "Howell-Jolly bodies inside red cells",
    "Auer rods in the cytoplasm of blasts",
    "Gleason pattern 3+4=7 with fused glands",
    "Patient with a dark irregular lesion on the back",
    "a Miss-shapen cell with a bilobed nucleus",
    "BI-RADS 4a mass with angular margins",
    "CD3/CD20/CD45 staining of the lymphoid cells",
    "Breslow depth of 0.8 mm under dermoscopy",
    "pigment network and dots/globules at the periphery",
    "cells may be 10 times larger than lymphocytes",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_medical_sentences_pass(text: str) -> None:
    assert find_identifier(text) is None, find_identifier(text)


def test_every_shipped_attributes_file_and_class_list_passes() -> None:
    from biomedvr_cli.attributes import load_attributes, read_class_list

    files = sorted(REPO.glob("biomedvr_cli/sandbox/tasks/*.attributes.json")) + sorted(
        REPO.glob("experiments/**/*.attributes.json")) + sorted(REPO.glob("examples/**/*.attributes.json"))
    assert len(files) >= 2
    for path in files:
        load_attributes(path)  # raises on any identifier-like sentence
    for path in REPO.glob("examples/**/classes.txt"):
        for name in read_class_list(path):
            assert find_identifier(name) is None, (path, name)
