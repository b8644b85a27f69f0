"""Pins the public surface: CLI commands and flags, spec defaults, package facades.
A change here is a change users see — update the docs with it."""

import orchestrator
import workloads
from orchestrator.cli import build_parser
from orchestrator.spec import Fit, Resources, Training, parse
from workloads.config import TrainConfig


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_cli_commands():
    assert sorted(_subcommands()) == sorted([
        "validate", "schema", "run", "resume", "results", "status", "ui", "fit", "propose", "report",
        "render", "submit", "logs", "delete"])


def test_cli_flags_of_the_main_commands():
    def flags(cmd):
        return sorted(o for a in _subcommands()[cmd]._actions for o in a.option_strings if o.startswith("--"))

    assert flags("run") == ["--address", "--help", "--plain", "--rounds", "--storage"]
    assert flags("results") == ["--format", "--help", "--storage"]
    fit_flags = ["--bootstrap", "--ci-level", "--form", "--group", "--help", "--inputs", "--loss", "--metric",
                 "--metric-kind", "--no-cross-validation", "--seed", "--storage", "--text-tokens"]
    assert flags("fit") == sorted(fit_flags + ["--format"])
    assert flags("propose") == sorted(fit_flags + ["--budget", "--cost", "--output", "--pool", "--target"])
    assert flags("render") == ["--help", "--image", "--namespace"]
    assert flags("status") == ["--cluster", "--context", "--format", "--help", "--kubeconfig", "--namespace",
                               "--storage"]
    for command in ("validate", "results", "status", "fit"):
        fmt = next(a for a in _subcommands()[command]._actions if "--format" in a.option_strings)
        assert list(fmt.choices) == ["table", "json", "csv"], command


def test_version_and_quiet_flags():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("vlmscale ")
    parser = build_parser()
    assert {"-v", "--verbose", "--version"} <= {o for a in parser._actions for o in a.option_strings}


def test_every_flag_has_help():
    for name, sub in _subcommands().items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help"


def test_spec_defaults():
    exp = parse({"apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "d"},
                 "spec": {"grid": {"llms": ["tiny-s"], "visual_tokens": [4]}}})
    s = exp.spec
    assert s.grid.compressors == ["quecc"] and s.grid.seeds == [0] and s.grid.tasks == ["shapes"]
    assert s.vision.model == "vit-tiny" and s.vision.freeze and s.vision.pretrain.steps == 300
    assert s.storage.path == "./vlmscale-runs" and s.tracking.mlflow_uri is None
    assert s.failure.retries_per_cell == 2 and s.failure.job_retries == 2
    assert Training().steps == 600 and Training().lr == 2e-3 and Training().strategy == "ddp"
    assert Resources().workers_per_cell == 1 and Resources().gpus_per_worker == 0
    assert Fit().form == "multiplicative" and Fit().loss == "squared" and Fit().propose == 4
    assert Fit().metric == "error" and Fit().metric_kind is None and Fit().ci_level == 0.9 and Fit().cross_validate
    assert Training().micro_batch_size is None and not Training().gradient_checkpointing
    assert Training().precision == "fp32" and s.vision.freeze
    # the spec's training section maps onto the workload's config one to one
    assert set(Training.model_fields) <= {f for f in TrainConfig.__dataclass_fields__}


def test_package_facades():
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None, name
    for name in workloads.__all__:
        assert getattr(workloads, name) is not None, name


def test_dependency_direction():
    """The engine imports neither ray, torch, mlflow nor kubernetes; the Kubernetes face needs no
    ray or torch; workloads never imports orchestrator."""
    import subprocess
    import sys

    def loaded(modules: str) -> set[str]:
        code = (f"import sys; import {modules}; "
                "print(' '.join(m for m in ('ray', 'torch', 'mlflow', 'kubernetes', 'orchestrator') if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return set(out.stdout.split())

    engine = "orchestrator.scaling.analysis, orchestrator.scaling.design, orchestrator.scaling.report"
    assert loaded(engine) == {"orchestrator"}
    assert not loaded("orchestrator.kube.render, orchestrator.kube.submit") & {"ray", "torch"}
    assert "orchestrator" not in loaded("workloads.config, workloads.train, workloads.launch")
