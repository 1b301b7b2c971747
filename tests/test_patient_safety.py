"""Patient safety (issue 19, parts 4 and 5): splits never share a patient, adapters hold no file
or header identity, and preset weights are pinned to a hub commit.

Runs on the tiny random backbone and on tiny fake Hugging Face caches; no network.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.data import CsvColumns, ImageRecord, open_source, sample_few_shot
from biomedvr_cli.data.hashing import legacy_file_hashes, new_hash_salt, pixel_hashes
from biomedvr_cli.data.idcolumns import id_columns
from tests.conftest import BIOMEDBERT_REPO, BIOMEDCLIP_REPO, make_color_tree, write_hf_repo

runner = CliRunner()
CLASSES = ("alpha cell", "beta cell", "gamma cell")


def _patient_manifest(root: Path, *, patients: int = 6, per_patient: int = 2) -> Path:
    """A CSV (PatientID, StudyInstanceUID, path, label, split) over a colour tree: each patient has one class;
    the last patient of each class is in the test split, and one of its images is also listed as train."""
    tree = make_color_tree(root / "imgs", per_class=patients * per_patient, size=32)
    lines = ["PatientID,StudyInstanceUID,path,label,split"]
    for c, name in enumerate(CLASSES):
        for i in range(patients * per_patient):
            patient = f"P{c}{i // per_patient}"
            split = "test" if i // per_patient == patients - 1 else "train"
            if i == patients * per_patient - 1:
                split = "train"  # the test patient's second image mislabelled as training: must not be drawn
            lines.append(f"{patient},1.2.{c}.{i},imgs/{name}/img{i:02d}.png,{name},{split}")
    assert tree.is_dir()
    manifest = root / "patients.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _groups(records: list[ImageRecord]) -> set[str]:
    return {r.group for r in records if r.group is not None}


# ----------------------------------------------------------------------------- which column groups


@pytest.mark.parametrize(("header", "chosen"), [
    (["path", "label", "PatientID"], "PatientID"),
    (["path", "label", "patient_id"], "patient_id"),
    (["Path", "Label", "MRN"], "MRN"),
    (["path", "label", "subject"], "subject"),
    (["path", "label", "StudyInstanceUID", "SubjectID"], "SubjectID"),  # the patient, not the exam
    (["path", "label", "AccessionNumber"], "AccessionNumber"),
    (["path", "label", "case_id"], "case_id"),
    (["path", "label", "Patient Name"], "Patient Name"),
])
def test_id_like_columns_are_recognised(header: list[str], chosen: str) -> None:
    found = id_columns(header, {0, 1})
    assert found and found[0].name == chosen


@pytest.mark.parametrize("name", ["patient_age", "case", "study", "studydate", "Study Date", "caseload", "label"])
def test_columns_that_are_not_ids(name: str) -> None:
    assert id_columns(["path", name], {0}) == []


def test_patient_id_groups_and_no_group_in_two_splits(tmp_path: Path) -> None:
    manifest = _patient_manifest(tmp_path)
    named = open_source(manifest, columns=CsvColumns(group="PatientID"))
    assert named.notices == []  # named: nothing to warn about
    test_groups = _groups([r for r in named.records if r.split == "test"])
    assert len(test_groups) == 3
    for seed in range(5):
        split = sample_few_shot(named.records, list(CLASSES), 2, seed=seed, val_shots=2)
        train, val = _groups(split.train), _groups(split.val)
        assert train and val and not train & val and not (train | val) & test_groups
        assert any("also have images in the test split" in w for w in split.warnings)
        assert not any(g in w for w in split.warnings for g in test_groups)  # counts only, never an id

    unnamed = open_source(manifest)  # not named: the patient column is used, and said so
    assert [r.group for r in unnamed.records] == [r.group for r in named.records]
    (notice,) = unnamed.notices
    assert "'PatientID'" in notice and "--group-column PatientID" in notice and "StudyInstanceUID" in notice
    off = open_source(manifest, columns=CsvColumns(group="none"))
    assert off.notices == [] and all(r.group is None for r in off.records)


def test_a_group_column_named_group_is_used_without_a_warning(tmp_path: Path) -> None:
    make_color_tree(tmp_path / "imgs", per_class=1, size=16)
    (tmp_path / "m.csv").write_text("path,label,group,PatientID\nimgs/alpha cell/img00.png,a,g1,P1\n")
    source = open_source(tmp_path / "m.csv")
    assert source.records[0].group == "g1" and source.notices == []


def test_benchmark_pool_holds_no_test_patient(tmp_path: Path) -> None:
    from biomedvr_cli.benchmark.datasets import load_dataset
    from biomedvr_cli.benchmark.protocol import DatasetSpec

    notices: list[str] = []
    dataset = load_dataset(DatasetSpec(name="patients", images=_patient_manifest(tmp_path)), notify=notices.append)
    assert dataset.test and not _groups(dataset.pool) & _groups(dataset.test)
    assert len(dataset.pool) == 3 * 10  # each class's test patient's mislabelled training image left out
    assert any("PatientID" in n for n in notices) and any("also have images in the test split" in n for n in notices)


def test_benchmark_takes_group_and_split_columns_from_the_suite_and_the_command_line(tmp_path: Path) -> None:
    import json

    from biomedvr_cli.benchmark.datasets import load_dataset
    from biomedvr_cli.benchmark.protocol import load_suite
    from biomedvr_cli.benchmark.request import BenchmarkOptions, build_request

    manifest = _patient_manifest(tmp_path)
    # The same manifest with its columns renamed: only the named columns can group and split it.
    text = manifest.read_text().replace("PatientID,StudyInstanceUID,path,label,split", "who,uid,path,label,fold")
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(text)
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"datasets": [{"name": "renamed", "images": "renamed.csv", "group_column": "who",
                                               "split_column": "fold"}]}))
    spec = load_suite(suite).datasets[0]
    assert (spec.group_column, spec.split_column) == ("who", "fold")
    dataset = load_dataset(spec, notify=lambda _n: None)
    assert dataset.test and not _groups(dataset.pool) & _groups(dataset.test) and len(dataset.pool) == 3 * 10
    request = build_request(BenchmarkOptions(out=tmp_path / "bench", images=renamed, group_column="who",
                                             split_column="fold"))
    assert (request.datasets[0].group_column, request.datasets[0].split_column) == ("who", "fold")


@pytest.fixture(scope="module")
def patient_fits(tmp_path_factory: pytest.TempPathFactory, tiny_backbone_spec: str) -> dict:
    """fit on the PatientID manifest without and with --group-column (adapters and stderr)."""
    root = tmp_path_factory.mktemp("patients")
    manifest = _patient_manifest(root)
    out: dict = {"manifest": manifest, "spec": tiny_backbone_spec}
    for key, extra in (("unnamed", []), ("named", ["--group-column", "PatientID"])):
        adapter = root / f"{key}.safetensors"
        result = runner.invoke(app, ["fit", str(manifest), "--shots", "2", "--val-shots", "1", "--epochs", "1",
                                     "--backbone", tiny_backbone_spec, "--out", str(adapter), "--json", *extra])
        assert result.exit_code == 0, result.stderr
        out[key] = (adapter, result)
    return out


def test_fit_warns_naming_the_patient_column_unless_it_is_named(patient_fits: dict) -> None:
    _, unnamed = patient_fits["unnamed"]
    assert "PatientID" in unnamed.stderr and "--group-column PatientID" in unnamed.stderr
    assert any("PatientID" in w for w in json.loads(unnamed.stdout)["warnings"])
    _, named = patient_fits["named"]
    assert "--group-column PatientID" not in named.stderr
    for _, result in (patient_fits["unnamed"], patient_fits["named"]):
        assert "also have images in the test split" in result.stderr
        assert "P05" not in result.stderr and "P15" not in result.stderr  # group values are never printed


def test_eval_split_column_and_missing_columns(patient_fits: dict, tmp_path: Path) -> None:
    adapter, _ = patient_fits["named"]
    manifest: Path = patient_fits["manifest"]
    renamed = manifest.with_name("fold.csv")
    renamed.write_text(manifest.read_text().replace(",split\n", ",fold\n", 1))
    base = ["eval", str(renamed), "--adapter", str(adapter), "--backbone", patient_fits["spec"], "--json"]
    result = runner.invoke(app, [*base, "--split-column", "fold"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["split"] == "test split"
    missing = runner.invoke(app, [*base, "--split-column", "partition"])
    assert missing.exit_code == 3 and "no 'partition' column" in missing.stderr
    fit_missing = runner.invoke(app, ["fit", str(manifest), "--shots", "1", "--backbone", patient_fits["spec"],
                                      "--group-column", "site", "--out", str(tmp_path / "x.safetensors")])
    assert fit_missing.exit_code == 3 and "no 'site' column" in fit_missing.stderr
    assert not (tmp_path / "x.safetensors").exists()


# ----------------------------------------------------------------------------- stored image hashes


def _config(adapter: Path) -> dict:
    return json.loads(runner.invoke(app, ["info", str(adapter), "--json"]).stdout)["config"]


def test_adapters_hold_salted_pixel_hashes_that_match_no_file_and_no_other_adapter(patient_fits: dict) -> None:
    first, second = (_config(patient_fits[k][0])["training"] for k in ("unnamed", "named"))
    for training in (first, second):
        assert len(training["image_hash_salt"]) == 32
        assert len(training["image_hashes"]) == 9 and all(len(h) == 16 for h in training["image_hashes"])
    assert first["image_hash_salt"] != second["image_hash_salt"]
    assert not set(first["image_hashes"]) & set(second["image_hashes"])  # the same images, other hashes
    files = sorted((patient_fits["manifest"].parent / "imgs").rglob("*.png"))
    assert not set(legacy_file_hashes(files)) & set(first["image_hashes"])  # no file checksum to look up


def test_eval_still_warns_about_images_the_adapter_was_fitted_on(patient_fits: dict) -> None:
    adapter, _ = patient_fits["named"]
    base = ["eval", str(patient_fits["manifest"]), "--adapter", str(adapter), "--backbone", patient_fits["spec"],
            "--json"]
    on_train = json.loads(runner.invoke(app, [*base, "--split", "train"]).stdout)
    (warning,) = [w for w in on_train["warnings"] if "used to fit" in w]
    assert warning.startswith("9 of the 33 ")  # 2 shots + 1 validation image of each of 3 classes
    on_test = json.loads(runner.invoke(app, base).stdout)
    assert on_test["split"] == "test split" and not any("used to fit" in w for w in on_test["warnings"])


def test_pixel_hashes_ignore_the_dicom_header(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from biomedvr_cli.data import decode_to_tensors

    found = get_testdata_file("MR_small.dcm", download=False)
    if found is None:
        pytest.skip("MR_small.dcm is not bundled with this pydicom")
    paths = []
    for i, name in enumerate(("Smith^John", "Doe^Jane")):
        ds = pydicom.dcmread(found)
        ds.PatientName, ds.PatientID = name, f"MRN{i}"
        ds.save_as(tmp_path / f"{i}.dcm")
        paths.append(tmp_path / f"{i}.dcm")
    batch = decode_to_tensors(paths, 32)
    salt = new_hash_salt()
    a, b = pixel_hashes(batch.images, salt)
    assert a == b  # the same pixels: the same hash, whatever the header says
    assert len(set(legacy_file_hashes(paths))) == 2  # the old file hash changed with the identifiers
    assert pixel_hashes(batch.images, new_hash_salt())[0] != a


# ----------------------------------------------------------------------------- pinned weights


def test_presets_pin_every_hub_repo_to_a_commit() -> None:
    from biomedvr_cli.backbones.presets import COMMIT_HASH, load_presets

    presets = load_presets()
    for preset in presets.values():
        assert {repo for repo, _ in preset.revisions} == set(preset.hf_repos), preset.name
        assert all(COMMIT_HASH.fullmatch(rev) for _, rev in preset.revisions)
    assert presets["biomedclip"].revision_of(BIOMEDCLIP_REPO) and presets["biomedclip"].revision_of(BIOMEDBERT_REPO)


def test_downloads_ask_for_the_pinned_commit(empty_hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from biomedvr_cli.backbones import downloads
    from biomedvr_cli.backbones.presets import pinned_revision

    asked: list[tuple[str, str, str | None]] = []

    class FakeApi:
        def model_info(self, repo: str, *, revision=None, **_kwargs):
            asked.append(("list", repo, revision))
            sibling = type("S", (), {"rfilename": "open_clip_config.json", "size": 2})
            weights = type("S", (), {"rfilename": "open_clip_model.safetensors", "size": 2})
            return type("Info", (), {"siblings": [sibling, weights]})

    def fake_download(repo_id: str, filename: str, *, revision=None, **_kwargs) -> str:
        asked.append((filename, repo_id, revision))
        return str(write_hf_repo(empty_hf_home / "hub", repo_id, {filename: b"{}"}) / filename)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    need = downloads.HubNeed(BIOMEDCLIP_REPO, required=("open_clip_config.json",),
                             one_of=("open_clip_model.safetensors",))
    notices: list[str] = []
    downloads.fetch_from_hub([need], "biomedclip", downloads.DownloadReporter(notify=notices.append), [])
    pin = pinned_revision(BIOMEDCLIP_REPO)
    assert asked and all(rev == pin for _, _, rev in asked)
    assert pin[:12] in notices[0]
    hint = downloads.fetch_hint([BIOMEDCLIP_REPO], "biomedclip")
    assert f"hf download {BIOMEDCLIP_REPO} --revision {pin}" in hint


def test_a_cache_holding_only_another_main_is_not_the_pinned_backbone(tmp_path: Path, monkeypatch) -> None:
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.backbones.presets import pinned_revision
    from biomedvr_cli.errors import BackboneUnavailableError
    from tests.conftest import tiny_biomedclip_files, use_hf_home

    home = use_hf_home(monkeypatch, tmp_path / "home")
    clip_files, _ = tiny_biomedclip_files()
    base = home / "hub" / ("models--" + BIOMEDCLIP_REPO.replace("/", "--"))
    moved_on = "f" * 40  # `main` after an upstream change
    (base / "snapshots" / moved_on).mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(moved_on)
    for name, data in clip_files.items():
        (base / "snapshots" / moved_on / name).write_bytes(data)
    with pytest.raises(BackboneUnavailableError) as info:
        load_backbone("biomedclip", allow_download=False)
    assert info.value.exit_code == 4 and f"--revision {pinned_revision(BIOMEDCLIP_REPO)}" in info.value.hint


def test_adapters_and_exports_record_the_revision(biomedclip_hf_home: Path, tmp_path: Path) -> None:
    from biomedvr_cli.backbones import load_backbone
    from biomedvr_cli.backbones.export import export_backbone
    from biomedvr_cli.backbones.presets import pinned_revision
    from biomedvr_cli.pipeline.fit import backbone_record

    pin = pinned_revision(BIOMEDCLIP_REPO)
    backbone = load_backbone("biomedclip")
    assert backbone.revision == pin and backbone_record(backbone).revision == pin
    export_backbone("biomedclip", tmp_path / "exported")
    manifest = json.loads((tmp_path / "exported" / "biomedvr-export.json").read_text())
    assert manifest["revision"] == pin
    assert load_backbone(f"local-dir:{tmp_path / 'exported'}").revision == pin
    assert load_backbone("sandbox").revision is None  # shipped weights: the package version pins them


def test_file_hash_fallback_matches_adapters_without_a_salt(tmp_path: Path) -> None:
    make_color_tree(tmp_path, per_class=1, size=16)
    path = next(tmp_path.rglob("*.png"))
    assert legacy_file_hashes([path]) == [hashlib.sha256(path.read_bytes()).hexdigest()[:16]]
