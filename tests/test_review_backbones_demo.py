"""Defects a hostile review of `backbones`, `info`, `demo` and the environment found (2026-12-07, session 12)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from tests.conftest import make_color_tree, write_color_attributes

runner = CliRunner()


def _line(result) -> str:
    return " ".join(result.stderr.split())


@pytest.fixture(scope="module")
def adapter(tiny_backbone_spec: str, tmp_path_factory) -> Path:
    root = make_color_tree(tmp_path_factory.mktemp("review-imgs") / "data", per_class=6, splits=("train", "test"))
    write_color_attributes(root / "attributes.json")
    out = tmp_path_factory.mktemp("review-adapter") / "a.safetensors"
    result = runner.invoke(app, ["fit", str(root), "--shots", "3", "--backbone", tiny_backbone_spec, "--out", str(out),
                                 "--epochs", "2"])
    assert result.exit_code == 0, result.stderr
    return out


def _edited(adapter: Path, folder: Path, edit: Callable[[dict], object], *, raw: Callable[[str], str] | None = None) -> Path:
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(adapter), framework="pt") as handle:
        metadata = dict(handle.metadata())
        metadata.pop("content_sha256", None)  # edited without the digest: what the checks after it catch
    config = json.loads(metadata["config"])
    edit(config)
    text = json.dumps(config)
    metadata["config"] = raw(text) if raw else text
    out = folder / "edited.safetensors"
    save_file(load_file(str(adapter)), str(out), metadata=metadata)
    return out


def test_info_refuses_a_calibration_count_its_scores_do_not_have_and_answers_at_once(adapter: Path, tmp_path: Path) -> None:
    edited = _edited(adapter, tmp_path, lambda c: c["calibration"]["conformal"].__setitem__("images", 10**18))
    for command in (["info", str(edited)], ["info", str(edited), "--json"]):
        result = runner.invoke(app, command)
        # the recorded max_level no longer fits the count (checked first), or the count its scores
        assert result.exit_code == 4 and "config.calibration.conformal." in _line(result)
        assert "1000000000000000000" in _line(result)


def test_assured_level_searches_rather_than_walks_the_ranks() -> None:
    from scipy.special import betainc

    from biomedvr_cli.method import conformal

    def walked(n: int, level: float, assurance: float) -> float | None:  # the definition, rank by rank
        for rank in range(max(1, math.ceil(level * (n + 1) - 1e-9)), n + 1):
            if float(betainc(rank, n + 1 - rank, level)) <= 1.0 - assurance:
                return rank / (n + 1)
        return None

    for n in (1, 5, 21, 22, 60, 137, 1000):
        for level, assurance in ((0.9, 0.9), (0.6, 0.8), (0.5, 0.5), (0.95, 0.99), (0.1, 0.9)):
            assert conformal.assured_level(n, level, assurance) == walked(n, level, assurance)
    assert conformal.assured_level(10**18, 0.9, 0.9) == pytest.approx(0.9, abs=1e-6)  # no walk over 10**17 ranks


def test_info_refuses_what_predict_refuses_a_width_that_is_not_the_embedding_size(adapter: Path, tmp_path: Path) -> None:
    edited = _edited(adapter, tmp_path, lambda c: c["backbone"].__setitem__("embed_dim", 7))
    result = runner.invoke(app, ["info", str(edited)])
    assert result.exit_code == 4 and "backbone.embed_dim is 7" in _line(result)
    assert runner.invoke(app, ["info", str(adapter)]).exit_code == 0


def test_a_deeply_nested_adapter_config_is_a_corrupt_adapter(adapter: Path, tmp_path: Path) -> None:
    def nest(text: str) -> str:
        return text[:-1] + ', "x": ' + "[" * 950 + "]" * 950 + "}"

    edited = _edited(adapter, tmp_path, lambda c: None, raw=nest)
    result = runner.invoke(app, ["info", str(edited)])
    assert result.exit_code == 4 and "has a corrupt config" in result.stderr


def test_export_refuses_the_current_folder_and_folders_around_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inner = tmp_path / "here" / "inner"
    inner.mkdir(parents=True)
    (inner / "keep.txt").write_text("mine")
    monkeypatch.chdir(inner)
    for target, words in ((".", "is the current folder"), ("..", "is a folder around the current folder")):
        result = runner.invoke(app, ["backbones", "export", "sandbox", target, "--force"])
        assert result.exit_code == 2 and words in _line(result), result.stderr
    assert (inner / "keep.txt").read_text() == "mine"


def test_export_under_a_file_is_an_unusable_output_before_any_loading(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = runner.invoke(app, ["backbones", "export", "sandbox", str(tmp_path / "afile" / "sub")])
    assert result.exit_code == 2 and "afile is a file, not a folder" in _line(result)


@pytest.mark.parametrize("kind, words", [("folder", "is a folder"), ("fifo", "is not a regular file")])
def test_weights_that_are_not_a_file_say_what_they_are(tmp_path: Path, kind: str, words: str) -> None:
    weights = tmp_path / "w.safetensors"
    weights.mkdir() if kind == "folder" else os.mkfifo(weights)
    result = runner.invoke(app, ["backbones", "export", f"ViT-B-32:{weights}", str(tmp_path / "out")])
    assert result.exit_code == 4 and words in _line(result) and "does not exist" not in result.stderr


def test_a_damaged_openai_archive_names_the_file_to_remove(tmp_path: Path) -> None:
    from biomedvr_cli.backbones.availability import Availability
    from biomedvr_cli.backbones.loader import _first_reason, _load_hint
    from biomedvr_cli.backbones.specs import parse_backbone

    archive = Path.home() / ".cache" / "clip" / "ViT-B-16.pt"
    hint = _load_hint(parse_backbone("clip-vit-b16"), Availability(True, checkpoint=archive))
    assert "~/.cache/clip/ViT-B-16.pt may be damaged: remove it" in hint
    cause = RuntimeError("Error(s) in loading state_dict for CLIP:\n\tMissing key(s): visual.proj")
    assert _first_reason(cause) == "Error(s) in loading state_dict for CLIP: Missing key(s): visual.proj"


def test_allow_download_must_be_on_or_off_and_debug_off_means_off(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("BIOMEDVR_ALLOW_DOWNLOAD", "never")
    refused = runner.invoke(app, ["backbones", "--json"])
    assert refused.exit_code == 2 and "BIOMEDVR_ALLOW_DOWNLOAD='never' is neither on nor off" in _line(refused)
    monkeypatch.setenv("BIOMEDVR_ALLOW_DOWNLOAD", "off")
    assert runner.invoke(app, ["backbones", "--json"]).exit_code == 0
    monkeypatch.setenv("BIOMEDVR_DEBUG", "off")
    missing = runner.invoke(app, ["info", str(tmp_path / "missing.safetensors")])
    assert missing.exit_code == 4 and "Traceback" not in missing.stderr


def test_the_sandbox_preset_says_its_real_input_size() -> None:
    from biomedvr_cli.backbones.presets import load_presets
    from biomedvr_cli.sandbox.draw import IMAGE_SIZE

    assert f"{IMAGE_SIZE} px" in load_presets()["sandbox"].description


@pytest.mark.parametrize("args, words", [
    (["demo", "--task", "nope"], "--task 'nope' is not a built-in task"),
    (["sandbox", "make", "d", "--task", "nope"], "--task 'nope' is not a built-in task"),
    (["demo", "--shots", "21"], "--shots"),
])
def test_demo_and_make_refuse_bad_option_values_before_any_work(args: list[str], words: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # a demo that started would make its folder here
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and words in _line(result)
    assert list(tmp_path.iterdir()) == []


def test_demo_library_checks_shots_against_its_images(tmp_path: Path) -> None:
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.pipeline.demo import max_demo_shots, run_demo

    assert max_demo_shots(24) == 20 and max_demo_shots(5) == 2  # 2 + 2 validation; 3 + 3 is over 5
    with pytest.raises(UsageError, match="not between 1 and 20"):
        run_demo(tmp_path / "w", shots=21)
    assert not (tmp_path / "w").exists()


def test_demo_workdir_that_is_a_file_is_refused_even_with_force(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "afile"), "--force"])
    assert result.exit_code == 2 and "--workdir afile is a file, not a folder" in _line(result)
    assert (tmp_path / "afile").read_text() == "x"


def test_a_failed_demo_removes_the_parent_folders_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.pipeline import demo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_run", lambda workdir, *args: (workdir.mkdir(parents=True), interrupted()))
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(tmp_path / "x" / "y" / "w")
    assert list(tmp_path.iterdir()) == []


def test_demo_prints_the_commands_that_make_the_same_data() -> None:
    import inspect

    from biomedvr_cli.pipeline import demo

    # The data are made with the task's default shift; the printed command must ask for it too.
    source = inspect.getsource(demo._run)
    assert 'make_task_dataset(data, task, per_class, test_per_class, seed, "default", True)' in source
    assert "--shift default --force" in source


def test_an_adapter_string_with_a_bidirectional_override_is_refused(adapter: Path, tmp_path: Path) -> None:
    edited = _edited(adapter, tmp_path, lambda c: c["attributes"].__setitem__("task", "colour \u202etxet"))
    result = runner.invoke(app, ["info", str(edited)])
    assert result.exit_code == 4 and "config.attributes.task holds the control character" in _line(result)
    assert "\u202e" not in result.stderr


@pytest.mark.parametrize("value", ["soon", "-5", "0", "1.5"])
def test_a_distributed_timeout_that_is_not_whole_seconds_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli import distributed
    from biomedvr_cli.errors import UsageError

    monkeypatch.setenv(distributed.TIMEOUT_ENV, value)
    with pytest.raises(UsageError, match="not a whole number of seconds"):
        distributed._timeout_seconds()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "90")
    assert distributed._timeout_seconds() == 90


def test_demo_force_never_reuses_a_folder_it_did_not_make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.pipeline import demo

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "scan.png").write_bytes(b"mine")
    result = runner.invoke(app, ["demo", "--workdir", str(project), "--force"])
    assert result.exit_code == 2 and "holds files an earlier demo did not make" in _line(result)
    assert (project / "data" / "scan.png").read_bytes() == b"mine"

    class Reached(Exception):
        pass

    def reached(*args):
        raise Reached

    monkeypatch.setattr(demo, "_run", reached)
    earlier = tmp_path / "earlier"
    (earlier / "data").mkdir(parents=True)
    (earlier / demo.DEMO_MARK).write_text("made by biomedvr demo\n")
    for folder in (earlier, tmp_path / "empty"):
        folder.mkdir(exist_ok=True)
        with pytest.raises(Reached):  # an earlier demo's folder, or an empty one, is reused with force
            demo.run_demo(folder, force=True)


@pytest.mark.parametrize("error, code, words", [
    (OSError(28, "No space left on device"), 3, "cannot store backbone 'biomedclip'"),
    (ConnectionError("connection reset"), 4, "downloading backbone 'biomedclip' failed"),
])
def test_a_download_that_fills_the_disk_is_a_write_failure_not_a_missing_backbone(
        error: BaseException, code: int, words: str, monkeypatch: pytest.MonkeyPatch, empty_hf_home: Path) -> None:
    import huggingface_hub

    from biomedvr_cli.backbones import downloads
    from biomedvr_cli.errors import BiomedVRError

    class FakeApi:
        def model_info(self, repo: str, **_kwargs):
            return type("Info", (), {"siblings": [type("S", (), {"rfilename": "open_clip_config.json", "size": 2})]})

    def failing_download(*args, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    need = downloads.HubNeed("org/repo", required=("open_clip_config.json",))
    with pytest.raises(BiomedVRError) as raised:
        downloads.fetch_from_hub([need], "biomedclip", downloads.DownloadReporter(notify=lambda m: None), [])
    assert raised.value.exit_code == code and words in raised.value.message


def test_a_folder_finds_every_format_the_decoder_opens(tmp_path: Path) -> None:
    from PIL import Image

    from biomedvr_cli.data import decode_to_tensors
    from biomedvr_cli.data.files import IMAGE_EXTENSIONS, is_image_file

    for suffix in (".ppm", ".pgm", ".jp2", ".j2k"):
        path = tmp_path / f"x{suffix}"
        Image.new("RGB", (12, 12), (200, 10, 10)).convert("L" if suffix == ".pgm" else "RGB").save(path)
        assert suffix in IMAGE_EXTENSIONS and is_image_file(path)
        batch = decode_to_tensors([path], 16)
        assert batch.kept == [0], batch.failures
