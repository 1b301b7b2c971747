"""Task files and their hand-written attributes files validate; bad ones fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biomedvr_cli.errors import InvalidInputError
from biomedvr_cli.sandbox.tasks import list_tasks, load_task


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "mytask.json"
    p.write_text(json.dumps(doc), encoding="utf-8")
    return p


def _doc(**classes) -> dict:
    return {"schema_version": 1, "name": "mine", "classes": classes or {"a": {"size": "small"}, "b": {"size": "large"}}}


def test_builtin_tasks_load_with_pairs_and_attributes() -> None:
    tasks = {t.name: t for t in list_tasks()}
    assert {"blood-smear", "cervical-cytology"} <= set(tasks)
    for t in tasks.values():
        assert len(t.class_names) >= 4
        assert t.confusion_pairs
        assert t.attributes_path() is not None


def test_unknown_attribute_value_fails_with_allowed_values(tmp_path: Path) -> None:
    p = _write(tmp_path, _doc(a={"nucleus": "trilobed"}, b={"size": "large"}))
    with pytest.raises(InvalidInputError) as exc:
        load_task(p)
    assert "trilobed" in exc.value.message and "nucleus" in exc.value.message
    assert "multilobed" in exc.value.hint


def test_unknown_family_and_bad_pair_fail(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown attribute 'colour'"):
        load_task(_write(tmp_path, _doc(a={"colour": "red"}, b={})))
    doc = _doc()
    doc["confusion_pairs"] = [["a", "zzz"]]
    with pytest.raises(InvalidInputError, match="confusion pair"):
        load_task(_write(tmp_path, doc))
    doc = _doc()
    doc["default_shift"] = "sepia"
    with pytest.raises(InvalidInputError, match="sepia"):
        load_task(_write(tmp_path, doc))


def test_unknown_builtin_name_lists_the_builtins() -> None:
    with pytest.raises(InvalidInputError) as exc:
        load_task("no-such-task")
    assert "blood-smear" in exc.value.hint


def test_custom_task_file_loads(tmp_path: Path) -> None:
    t = load_task(_write(tmp_path, _doc(a={"size": ["small", "medium"]}, b={"size": {"large": 2, "medium": 1}})))
    assert t.class_names == ["a", "b"] and t.classes["b"]["size"] == {"large": 2.0, "medium": 1.0}


@pytest.mark.parametrize("task", ["blood-smear", "cervical-cytology"])
def test_attributes_files_follow_the_format(task: str) -> None:
    spec = load_task(task)
    doc = json.loads(spec.attributes_path().read_text(encoding="utf-8"))
    assert doc["schema_version"] == 1 and doc["task"] == task
    assert set(doc["classes"]) == set(spec.class_names)
    assert doc["provenance"]["provider"] == "hand-written"
    seen: set[str] = set()
    for cname, sets in doc["classes"].items():
        assert set(sets) == {"descriptive", "distinctive", "confusion"}
        for sentences in sets.values():
            assert sentences
            for s in sentences:
                assert len(s) >= 20 and s not in seen
                assert cname.lower() not in s.lower()
                seen.add(s)
