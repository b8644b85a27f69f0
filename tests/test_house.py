"""The structure the code keeps: no import circles, modules of a readable size, the engine and the
spec importing only what they may, one source for each vocabulary and each default."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "workloads")
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of ours that ``name`` imports — at the top or inside a function — and every
    outside top-level package, as names."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base[: len(base) - (node.level - 1)]
                module = ".".join(pkg + ([node.module] if node.module else []))
            else:
                module = node.module
            targets = [f"{module}.{a.name}" for a in node.names] + [module]
        else:
            continue
        for target in targets:
            while target and target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target in modules or target.split(".")[0] not in PACKAGES:
                found.add(target)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {t for t in _imports(name, path, modules) if t in modules} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_anywhere():
    graph = _graph()
    assert len(graph) > 50 and graph["orchestrator.run.driver"]  # the graph is really read
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# The packages of orchestrator from the bottom up: each may import those before it, never one after.
LAYERS = ("errors", "scaling", "spec", "protocols", "store", "plan", "study", "tracking", "run",
          "kube", "convert", "commands", "cli")


def test_the_top_level_holds_only_the_facade_the_errors_the_cli_and_packages():
    top = {p.name for p in (ROOT / "orchestrator").iterdir() if p.suffix == ".py"}
    assert top == {"__init__.py", "errors.py", "cli.py"}
    packages = {p.name for p in (ROOT / "orchestrator").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS) - {"errors", "cli"}
    for name in packages:  # each says what it owns
        assert len(ast.get_docstring(ast.parse((ROOT / "orchestrator" / name / "__init__.py").read_text())) or "") > 80


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if parts[0] == "orchestrator" and len(parts) > 1 and parts[1] in LAYERS else None


def test_each_package_imports_only_the_packages_below_it():
    graph = _graph()
    wrong = sorted(f"{a} imports {b}" for a, targets in graph.items() for b in targets
                   if (la := _layer(a)) is not None and (lb := _layer(b)) is not None and lb > la)
    assert wrong == []


def test_the_layer_check_sees_an_upward_import():
    assert _layer("orchestrator.store.layout") < _layer("orchestrator.run.driver")
    assert _layer("orchestrator.scaling.fit") < _layer("orchestrator.spec.study")


def test_only_tracking_talks_to_mlflow():
    """MLflow's client is the tracker's business: other packages ask the Tracker (the CLI only names
    MLflow's exception, to say what failed)."""
    modules = _modules()
    talking = sorted(name for name, path in modules.items()
                     if any(t.split(".")[0] == "mlflow" for t in _imports(name, path, modules))
                     and not name.startswith("orchestrator.tracking") and name != "orchestrator.cli")
    assert talking == []


def test_no_function_takes_more_than_8_parameters():
    many = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) - int(bool(a.args) and a.args[0].arg in ("self", "cls"))
                if n > 8:
                    many.append(f"{name}.{node.name}: {n}")
    assert many == []


def test_no_module_over_450_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


STDLIB = set(sys.stdlib_module_names) | {"__future__"}
ENGINE_THIRD_PARTY = {"numpy", "scipy", "pandas", "matplotlib", "sympy"}


def test_the_engine_imports_only_itself_the_error_family_and_numerics():
    """orchestrator/scaling/ takes tables and settings: nothing of the runtime, the spec or the workloads."""
    modules = _modules()
    for name, path in modules.items():
        if not name.startswith("orchestrator.scaling"):
            continue
        for target in _imports(name, path, modules):
            top = target.split(".")[0]
            allowed = (target.startswith("orchestrator.scaling") or target == "orchestrator.errors"
                       or top in STDLIB or top in ENGINE_THIRD_PARTY)
            assert allowed, f"{name} imports {target}"


def _loaded(modules: str) -> set[str]:
    code = f"import sys; import {modules}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


def test_the_engine_and_the_spec_load_no_runtime():
    heavy = {"ray", "torch", "mlflow", "kubernetes", "transformers"}
    engine = _loaded("orchestrator.scaling.analysis, orchestrator.scaling.design, orchestrator.scaling.report, "
                     "orchestrator.scaling.pool, orchestrator.scaling.cost")
    ours = {m for m in engine if m.split(".")[0] in PACKAGES}
    assert ours <= {"orchestrator", "orchestrator.errors"} | {m for m in ours if m.startswith("orchestrator.scaling")}
    assert not engine & heavy
    spec = _loaded("orchestrator.spec")
    assert not spec & heavy and "workloads.compressors.module" not in spec


# ------------------------------------------------------------------------------------------------
# one source for each vocabulary


def _schema_defs():
    from orchestrator.spec import json_schema

    return json_schema()["$defs"]


def test_the_spec_schema_and_the_cli_list_what_the_registries_hold():
    import click

    from orchestrator.cli import cli
    from orchestrator.scaling.cost import COST_MODELS
    from orchestrator.scaling.fit import LOSSES
    from orchestrator.scaling.forms import FORMS, METRIC_KINDS
    from workloads import compressors

    defs = _schema_defs()
    assert defs["Grid"]["properties"]["compressors"]["items"]["enum"] == list(compressors.names())
    assert defs["GridPoint"]["properties"]["compressor"]["anyOf"][0]["enum"] == list(compressors.names())
    assert defs["Fit"]["properties"]["form"]["enum"] == list(FORMS)
    assert defs["Fit"]["properties"]["loss"]["enum"] == list(LOSSES)
    assert defs["Fit"]["properties"]["metric_kind"]["anyOf"][0]["enum"] == list(METRIC_KINDS)
    fit = cli.commands["fit"]
    params = {p.name: p for p in fit.get_params(click.Context(fit))}
    assert list(params["form"].type.choices) == list(FORMS)
    assert list(params["loss"].type.choices) == list(LOSSES)
    assert list(params["metric_kind"].type.choices) == list(METRIC_KINDS)
    assert all(k.syntax in params["cost_model"].help for k in COST_MODELS.values())


def test_the_reference_docs_are_generated_from_the_registries_and_current():
    from orchestrator.commands.reference import reference_page
    from orchestrator.scaling.cost import COST_MODELS
    from orchestrator.scaling.forms import FORMS
    from workloads import compressors

    text = reference_page()
    assert (ROOT / "docs" / "reference.md").read_text() == text, \
        "docs/reference.md is stale: run `make docs` (python -m orchestrator.commands.reference > docs/reference.md)"
    for name in [*compressors.names(), *FORMS]:
        assert f"| `{name}` |" in text, name
    for kind in COST_MODELS.values():
        assert f"| `{kind.syntax}` |" in text


def test_a_registered_compressor_is_checked_and_built_like_the_others():
    """What one new file in workloads/compressors/ gets: its token rule enforced by the spec's check
    and by the builder, a module that trains, its FLOPs counted."""
    import torch

    from workloads.compressors import REGISTRY, CompressorKind, VisualTokenError, build_compressor, check_visual_tokens
    from workloads.compressors.base import register

    class Strided(CompressorKind):
        name, order, summary = "test-strided", 99, "every k-th patch, then a linear map"

        def feasible(self, grid, limit=None):
            return [v for v in range(1, grid * grid + 1) if (grid * grid) % v == 0]

        def refusal(self, v, grid):
            return None if v in self.feasible(grid) else f"{v} does not divide {grid * grid}"

        def init(self, m, s):
            m.proj = torch.nn.Linear(s.dim, s.dim)

        def forward(self, m, x):
            return m.proj(x.features[:, :: x.features.shape[1] // m.visual_tokens])

        def flops(self, s):
            return 2 * s.visual_tokens * s.dim * s.dim

    register(Strided)
    try:
        with pytest.raises(VisualTokenError, match="5 does not divide 16"):
            check_visual_tokens("test-strided", 5, 4)
        comp = build_compressor("test-strided", 4, 4, 8, 8, heads=2, num_layers=1)
        from workloads.compressors import CompressorInputs

        out = comp(CompressorInputs(torch.randn(2, 16, 8), 4))
        assert out.shape == (2, 4, 8) and comp.flops_per_image() == 2 * 4 * 8 * 8
        out.sum().backward()
        assert comp.proj.weight.grad is not None
    finally:
        del REGISTRY["test-strided"]


# ------------------------------------------------------------------------------------------------
# one set of defaults


def test_the_spec_takes_the_workloads_defaults():
    """Every spec field that becomes a workload config field has the workload's default, so a cell
    built by hand (tests, benchmarks) and one built from a default spec train alike."""
    from orchestrator.spec import Data, Profile, Training, Vision, VisionPretraining
    from orchestrator.spec.cells import DATA_TO_DATA, TRAINING_DERIVED, VISION_TO_MODEL
    from workloads.config import DataConfig, ModelConfig, PretrainConfig, ProfileSettings, TrainConfig

    def default(model, field):
        value = model.model_fields[field].get_default(call_default_factory=True)
        return tuple(value) if isinstance(value, list) else value

    for src, dst in VISION_TO_MODEL.items():
        assert default(Vision, src) == getattr(ModelConfig, dst), src
    for field in DATA_TO_DATA:
        assert default(Data, field) == getattr(DataConfig, field), field
    for field in set(Training.model_fields) - set(TRAINING_DERIVED):
        assert default(Training, field) == getattr(TrainConfig, field), field
    assert default(Training, "lr") == TrainConfig.lr
    for field in ("steps", "batch_size", "lr"):
        assert default(VisionPretraining, field) == getattr(PretrainConfig, field), field
    for field in ("batch_sizes", "answer_tokens", "repeats", "warmup", "dtype"):
        assert default(Profile, field) == getattr(ProfileSettings, field), field
    from orchestrator.spec import Fit

    assert default(Fit, "text_tokens") == ProfileSettings.text_tokens  # one Q: the fit's is the profile's


def test_a_default_spec_cell_equals_a_hand_built_one():
    from orchestrator.spec import parse
    from workloads.config import CellConfig, DataConfig, ModelConfig, TrainConfig

    exp = parse({"apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "d"},
                 "spec": {"grid": {"llms": ["tiny-s"], "visual_tokens": [4], "compressors": ["avgpool"]}}})
    (cell,) = exp.cells()
    assert cell.config == CellConfig(ModelConfig(llm="tiny-s", compressor="avgpool", visual_tokens=4),
                                     DataConfig(), TrainConfig())


def test_each_fit_setting_has_one_default_shown_alike_in_the_schema_the_help_and_the_docs():
    """The spec's Fit block defines the defaults; the schema, every analysis command's --help and the
    table in docs/law-engine.md show the same values (a CSV fit once got 1000 replicates, an experiment 200)."""
    import re

    import click

    from orchestrator.cli import cli
    from orchestrator.spec.study import FIT_DEFAULTS

    def shown(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)

    props = _schema_defs()["Fit"]["properties"]
    readme = (ROOT / "docs" / "law-engine.md").read_text()
    for name, value in FIT_DEFAULTS.items():
        assert props[name].get("default") == value, name
        if value is None:
            continue
        row = re.search(rf"^\| `fit\.{name}`[^|]*\| `([^`]+)` \| `([^`]+)` \|$", readme, re.M)
        assert row and row.group(2) == shown(value), (name, row and row.group(0))
        if name == "cross_validate":
            continue
        for command in ("fit", "frontier", "propose", "report"):
            cmd = cli.commands[command]
            params = {p.name: p for p in cmd.get_params(click.Context(cmd))}
            assert f"fit.{name}, else {shown(value)})" in params[name].help, (command, name, params[name].help)


def test_the_strategies_the_spec_offers_are_the_engines_there_are():
    import typing

    from workloads.config import Strategy
    from workloads.strategies import ENGINES

    assert set(typing.get_args(Strategy)) == set(ENGINES)
