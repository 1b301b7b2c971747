"""The method registry (method/registry.json): one source for `fit --method` and `benchmark --methods`.

Entries load and validate, a broken entry is refused naming it, fit and benchmark resolve a
name to the same settings, options that conflict with a named method are refused (exit 2),
and every method constant sits in MethodConfig, reaches the feature head and is recorded in
the adapter.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.errors import UsageError
from biomedvr_cli.method.config import HEAD_ONLY_FIELDS, MethodConfig
from biomedvr_cli.method.recipes import available_recipes
from biomedvr_cli.method.registry import FAMILIES, REGISTRY_PATH, load_registry, registry
from tests.conftest import make_color_tree

runner = CliRunner()


def test_every_entry_loads_and_names_a_runner_and_its_settings() -> None:
    from biomedvr_cli.benchmark.methods import GROUPS, METHODS, RUNNERS

    reg = registry()
    assert set(RUNNERS) == set(FAMILIES) and METHODS is reg.methods and GROUPS is reg.groups
    for name, spec in reg.methods.items():
        assert spec.name == name and spec.description
        if spec.family == "vr":
            assert spec.recipe in available_recipes() and isinstance(spec.config, MethodConfig)
            assert replace(MethodConfig(), **spec.settings) == spec.config  # unnamed settings take the defaults
        else:
            assert spec.recipe is None
    assert reg.methods[reg.default].fittable and reg.default == "biomedvr"
    assert reg.methods["biomedvr"].config == MethodConfig()
    # The published configurations, as docs/method.md describes them.
    paper = reg.methods["biomedvr-paper"]
    assert (paper.config.vr, paper.config.combine, paper.config.feature_head, paper.recipe) == ("padding", "add", False, "paper")
    assert reg.methods["ar"].scorer == "class-names" and not reg.methods["ar"].config.negative
    assert set(reg.groups["all"]) == set(reg.groups["baselines"] + reg.groups["ours"] + reg.groups["ablations"])
    assert all(member in reg.methods for members in reg.groups.values() for member in members)


@pytest.mark.parametrize(("edit", "words"), [
    (lambda d: d["methods"].append(dict(d["methods"][0])), "used twice"),
    (lambda d: d["methods"][8].update(family="magic"), "family must be one of"),
    (lambda d: d["methods"][8].update(settings={"vr": "swirl"}), "unknown VR kind"),
    (lambda d: d["methods"][8].update(settings={"colour": "red"}), "not settings of the vr family"),
    (lambda d: d["methods"][8].update(recipe="slow"), "recipe 'slow'"),
    (lambda d: d["methods"][2].update(recipe="fast"), "other families none"),
    (lambda d: d["methods"][0].update(settings={"vr": "full"}), "not settings of the zero-shot family"),
    (lambda d: d["methods"][8].update(scorer="pixels"), "scorer must be one of"),
    (lambda d: d["methods"][8].update(extra=1), "unknown key(s) extra"),
    (lambda d: d["groups"].update(ours=["biomedvr", "nothing"]), "'nothing' is neither a method nor a group"),
    (lambda d: d.update(default="linear-probe"), "must name a vr method"),
])
def test_a_broken_entry_is_refused_naming_it(edit, words: str, tmp_path: Path) -> None:
    doc = json.loads(REGISTRY_PATH.read_text(encoding="utf-8"))
    edit(doc)
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="method registry") as caught:
        load_registry(path)
    assert words in str(caught.value)


@pytest.fixture()
def capture_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Runs `biomedvr fit ARGS` up to the library call and returns the FitRequest it would make (or the result)."""
    import biomedvr_cli.pipeline.fit as fitting

    images = make_color_tree(tmp_path / "imgs", per_class=1, size=8)
    requests = []

    def stop(request, **kwargs):
        requests.append(request)
        raise typer.Exit(0)

    monkeypatch.setattr(fitting, "fit_adapter", stop)

    def run(*args: str):
        requests.clear()
        result = runner.invoke(app, ["fit", str(images), "--shots", "1", "--out", str(tmp_path / "a.safetensors"), *args])
        return requests[0] if requests else result
    return run


def test_fit_method_and_benchmark_methods_resolve_the_same_settings(capture_fit) -> None:
    from biomedvr_cli.benchmark.methods import METHODS, Overrides, method_signature, resolve_methods

    fittable = registry().fit_methods()
    assert {"biomedvr", "biomedvr-paper", "attrvr", "ar"} <= set(fittable)
    for name in fittable:
        request = capture_fit("--method", name)
        assert hasattr(request, "method"), request.stderr
        spec = METHODS[resolve_methods(name)[0]]
        assert (request.method, request.recipe) == (spec.config, spec.recipe), name
        signature = method_signature(spec, Overrides())
        assert signature["config"].items() <= request.method.to_dict().items()
        assert signature["recipe"]["name"] == request.recipe
    assert capture_fit().method == METHODS["biomedvr"].config  # no --method: the registry's default


def test_paper_flag_is_the_paper_method(capture_fit) -> None:
    by_flag, by_name = capture_fit("--paper"), capture_fit("--method", "biomedvr-paper")
    assert (by_flag.method, by_flag.recipe) == (by_name.method, by_name.recipe)
    assert (by_flag.method.vr, by_flag.method.feature_head, by_flag.recipe) == ("padding", False, "paper")
    # repeating a value the method already has is no conflict
    assert capture_fit("--paper", "--vr", "padding", "--recipe", "paper").method == by_name.method


@pytest.mark.parametrize(("args", "words"), [
    (["--paper", "--vr", "full"], "--vr full conflicts with --paper"),
    (["--method", "biomedvr-paper", "--recipe", "fast"], "--recipe fast conflicts with --method biomedvr-paper"),
    (["--method", "attrvr", "--no-confusion-loss", "--gate", "class"], "--gate class conflicts with --method attrvr"),
    (["--method", "biomedvr", "--no-feature-head"], "--no-feature-head conflicts with --method biomedvr"),
    (["--paper", "--method", "attrvr"], "conflicts with --method attrvr"),
    (["--method", "ar", "--attributes", "a.json"], "--attributes conflicts with --method ar"),
    (["--method", "biomedvr-strict-head", "--head-clear-z", "0.5"],
     "--head-clear-z 0.5 conflicts with --method biomedvr-strict-head"),
    (["--top-k-sentences", "4", "--k", "3"], "disagree"),
    (["--method", "linear-probe"], "'linear-probe' is not one of"),
])
def test_options_that_conflict_with_the_named_method_are_refused(capture_fit, args: list[str], words: str) -> None:
    result = capture_fit(*args)
    assert getattr(result, "exit_code", None) == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0] and "fix:" in lines[0]
    assert "Traceback" not in result.stderr


def test_without_method_the_options_change_the_default(capture_fit) -> None:
    request = capture_fit("--vr", "padding", "--no-feature-head", "--recipe", "paper", "--k", "5", "--m", "7")
    assert request.method == replace(MethodConfig(), vr="padding", feature_head=False, k=5, m=7)
    assert request.recipe == "paper"
    assert capture_fit("--top-k-sentences", "4", "--max-sentences", "9").method == replace(MethodConfig(), k=4, m=9)
    # the variants that reproduce an earlier default keep to its logistic heads
    logistic = capture_fit("--head-family", "logistic").method
    assert logistic == replace(MethodConfig(), head_family="logistic") == capture_fit(
        "--method", "biomedvr-logistic-head").method
    assert capture_fit("--head-clear-z", "1.5", "--head-family", "logistic").method == capture_fit(
        "--method", "biomedvr-strict-head").method
    assert capture_fit("--head-clear-z", "1.5").method == replace(MethodConfig(), head_clear_z=1.5)
    # the grid before 2026-12-07 and the averaged head (tried, not kept) are named variants;
    # every other setting is the default's (or that default's, logistic heads only)
    assert capture_fit("--method", "biomedvr-decade-grid").method == replace(
        logistic, head_penalties=(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6))
    average = capture_fit("--head-combine", "average").method
    assert average == capture_fit("--method", "biomedvr-average-head").method
    assert average == replace(MethodConfig(), head_combine="average")
    assert capture_fit("--method", "biomedvr-average-strict-vr").method == replace(average, clear_z=3.0)
    # set 11's candidate: only the VR check changes (with the logistic heads of its time)
    assert capture_fit("--method", "biomedvr-strict-vr").method == replace(logistic, clear_z=3.0) == logistic
    assert capture_fit("--method", "biomedvr-lenient-vr").method == replace(logistic, clear_z=1.5)
    assert capture_fit("--method", "biomedvr-gaussian-head").method == MethodConfig()


def test_the_method_names_its_scorer(capture_fit) -> None:
    assert capture_fit("--method", "ar").scorer == "class-names"
    assert capture_fit("--method", "attrvr").scorer == capture_fit().scorer == "attributes"


def test_ar_scores_against_class_name_templates_even_beside_an_attributes_file(tmp_path: Path,
                                                                              tiny_backbone_spec: str) -> None:
    from tests.conftest import write_color_attributes

    images = make_color_tree(tmp_path / "beside", per_class=3, size=16)
    write_color_attributes(images / "attributes.json")
    out = tmp_path / "ar.safetensors"
    args = ["fit", str(images), "--shots", "1", "--backbone", tiny_backbone_spec, "--out", str(out), "--epochs", "1"]
    result = runner.invoke(app, [*args, "--method", "ar", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["attributes"] == "class-name templates"


def test_method_constants_are_config_fields_not_module_globals() -> None:
    import biomedvr_cli.method.feature_head as feature_head

    assert not {"CLEAR_Z", "PENALTY_GRID", "LIKELIHOOD_MIN_PER_CLASS", "_LBFGS_STEPS"} & set(vars(feature_head))
    config = MethodConfig()
    assert (config.clear_z, config.head_lbfgs_steps, config.head_likelihood_min) == (3.0, 100, 8)
    assert config.head_penalties == (1e-1, 3.16e-2, 1e-2, 3.16e-3, 1e-3, 3.16e-4, 1e-4, 3.16e-5, 1e-5, 3.16e-6, 1e-6)
    assert set(HEAD_ONLY_FIELDS) <= {f.name for f in fields(MethodConfig)}
    for bad in ({"clear_z": -1.0}, {"head_penalties": []}, {"head_penalties": [1e-3, 1e-2]},
                {"head_penalties": [math.inf]}, {"head_lbfgs_steps": 0}, {"head_likelihood_min": 1.5}):
        with pytest.raises(ValueError):
            MethodConfig(**bad)


def test_feature_head_reads_its_constants_from_the_config() -> None:
    import torch
    import torch.nn.functional as F

    from biomedvr_cli.method.feature_head import fit_feature_head

    torch.manual_seed(0)
    classes, dim = 4, 32
    labels = torch.arange(40) % classes
    prototypes = F.normalize(torch.randn(classes, dim), dim=1)
    signal = F.normalize(prototypes[labels] + 0.3 * torch.randn(40, dim) / dim**0.5, dim=1)
    start = torch.zeros(40, classes)
    quick = MethodConfig(head_folds=2, head_penalties=(0.5,), head_lbfgs_steps=20, head_family="logistic")
    assert fit_feature_head(start, signal, labels, classes, seed=0, config=quick).penalty == 0.5  # only the config's
    strict = replace(quick, head_clear_z=1e6)
    assert math.isinf(fit_feature_head(start, signal, labels, classes, seed=0, config=strict).penalty)  # none that clear
    vr_only = replace(quick, clear_z=1e6)  # the VR epochs' check does not govern the head
    assert fit_feature_head(start, signal, labels, classes, seed=0, config=vr_only).penalty == 0.5


def test_head_clear_z_is_its_own_setting_and_old_adapters_read_clear_z() -> None:
    config = MethodConfig()
    assert (config.head_clear_z, config.clear_z) == (0.5, 3.0)
    assert MethodConfig.from_dict(config.to_dict()) == config
    # an adapter from before head_clear_z existed (2026-12-06) recorded clear_z 1.5
    older = {k: v for k, v in config.to_dict().items() if k != "head_clear_z"} | {"clear_z": 1.5}
    assert MethodConfig.from_dict(older).head_clear_z == 1.5  # the head used clear_z before the field existed
    assert MethodConfig.from_dict({**older, "clear_z": 2.0}).head_clear_z == 2.0
    for bad in (-0.1, math.nan, math.inf, True, "1"):
        with pytest.raises(ValueError, match="head_clear_z"):
            MethodConfig(head_clear_z=bad)


def test_adapter_records_the_constants_and_older_adapters_read_todays(tmp_path: Path, tiny_backbone_spec: str) -> None:
    make_color_tree(tmp_path / "imgs", per_class=3, size=16)
    out = tmp_path / "a.safetensors"
    result = runner.invoke(app, ["fit", str(tmp_path / "imgs"), "--shots", "1", "--backbone", tiny_backbone_spec,
                                 "--out", str(out), "--epochs", "1", "--method", "biomedvr"])
    assert result.exit_code == 0, result.stderr
    recorded = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)["config"]["method"]
    assert recorded["clear_z"] == 3.0 and recorded["head_penalties"] == list(MethodConfig().head_penalties)
    assert (recorded["head_lbfgs_steps"], recorded["head_likelihood_min"]) == (100, 8)
    assert MethodConfig.from_dict(recorded).to_dict() == recorded
    older = {k: v for k, v in recorded.items() if k not in ("clear_z", "head_penalties", "head_lbfgs_steps",
                                                               "head_likelihood_min")}
    older["head_clear_z"] = recorded["head_clear_z"]  # a field of its own since 2026-12-06 (its legacy value: above)
    # Half-decade penalties since 2026-12-07: an adapter that does not record its grid searched decades.
    assert MethodConfig.from_dict(older).head_penalties == (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
    # The VR epochs' check was 1.5 until 2026-12-07: an adapter that does not record it used that.
    assert MethodConfig.from_dict(older).clear_z == 1.5
    assert MethodConfig.from_dict(older) == MethodConfig.from_dict({**recorded, "clear_z": 1.5,
                                                                    "head_penalties": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]})
