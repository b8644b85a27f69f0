"""Pins the public surface: CLI commands and flags, spec defaults, package facades.
A change here is a change users see — update the docs with it."""

import orchestrator
import workloads
from orchestrator.spec import Fit, Resources, Training, parse
from workloads.config import TrainConfig


def _subcommands():
    from orchestrator.cli import cli

    return cli.commands


def _options(cmd):
    """Every option of a Click command, --help included, as (option strings, parameter)."""
    import click

    from orchestrator.cli import cli

    root = click.Context(cli, **cli.context_settings)  # subcommands inherit -h and show_default from it
    ctx = root if cmd is cli else click.Context(cmd, parent=root)
    return [(p.opts + p.secondary_opts, p) for p in cmd.get_params(ctx) if isinstance(p, click.Option)]


def test_cli_commands():
    assert sorted(_subcommands()) == sorted([
        "validate", "schema", "run", "resume", "results", "status", "ui", "fit", "propose", "report",
        "render", "submit", "logs", "delete", "completion", "profile", "frontier", "repair", "rescore",
        "convert-benchmark"])


def test_cli_flags_of_the_main_commands():
    def flags(cmd):
        return sorted(o for opts, _ in _options(_subcommands()[cmd]) for o in opts if o.startswith("--"))

    assert flags("run") == ["--address", "--force", "--help", "--plain", "--restart-changed", "--rounds", "--storage"]
    assert flags("results") == ["--format", "--help", "--storage"]
    fit_flags = ["--at", "--bootstrap", "--ci-level", "--floor", "--form", "--group", "--help", "--inputs", "--law",
                 "--loss", "--metric", "--metric-kind", "--no-cross-validation", "--param", "--parameters", "--per-group",
                 "--seed",
                 "--storage", "--text-tokens"]
    assert flags("fit") == sorted(fit_flags + ["--cost", "--format"])
    assert flags("report") == sorted(fit_flags + ["--cost", "--output"])
    assert flags("frontier") == sorted(fit_flags + ["--cost", "--format"])
    assert flags("profile") == ["--address", "--format", "--fresh", "--help", "--storage"]
    cost = next(p for opts, p in _options(_subcommands()["fit"]) if "--cost" in opts)
    assert cost.default == "flops"
    assert flags("propose") == sorted(fit_flags + ["--budget", "--cost", "--format", "--output", "--pool", "--target"])
    assert flags("render") == ["--force", "--help", "--image", "--namespace"]
    assert flags("status") == ["--cluster", "--context", "--format", "--help", "--kubeconfig", "--namespace",
                               "--storage"]
    for command in ("validate", "results", "status", "fit", "propose", "profile"):
        fmt = next(p for opts, p in _options(_subcommands()[command]) if "--format" in opts)
        assert list(fmt.type.choices) == ["table", "json", "csv"] and fmt.default == "table", command


def test_version_and_quiet_flags():
    import subprocess
    import sys

    from orchestrator.cli import cli

    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("vlmscale ")
    assert {"-v", "--verbose", "--version", "-h", "--help"} <= {o for opts, _ in _options(cli) for o in opts}


def test_the_program_exits_with_main_s_code_and_every_byte_written(tmp_path):
    """``vlmscale`` leaves with os._exit after the exit handlers: buffered output still arrives, in
    full, and the exit code is main's (2 for bad input, 1 for a traceback)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert 'vlmscale = "orchestrator.cli:entry"' in pyproject
    out = tmp_path / "schema.json"
    with open(out, "w") as f:  # a file, not a terminal: the output is block-buffered
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "schema"], stdout=f, stderr=subprocess.PIPE,
                           text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["title"]
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(tmp_path / "none.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "none.yaml" in r.stderr and "Traceback" not in r.stderr
    code = ("import sys, atexit; from orchestrator import cli; sys.argv = ['vlmscale', '--version'];"
            "cli.main = lambda: 1 / 0; cli.entry()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1 and "ZeroDivisionError" in r.stderr


def test_every_flag_has_help_and_shows_its_default():
    import click
    from click.testing import CliRunner

    from orchestrator.cli import cli

    root = click.Context(cli, **cli.context_settings)
    for name, sub in _subcommands().items():
        shown = " ".join(CliRunner().invoke(cli, [name, "--help"]).output.split())
        passed = sub.make_context(name, [], parent=root, resilient_parsing=True).params  # what a command gets
        for opts, p in _options(sub):
            assert p.help, f"{name} {opts[0]} has no help"
            default = passed.get(p.name)
            if p.expose_value and default not in (None, False, ()):  # () : a repeatable option given none
                assert f"[default: {default}]" in shown, f"{name} {opts[0]} hides its default"


def test_shell_completion():
    """Click's completion protocol, as the shell runs it: commands, options, choices, and the
    experiment names found under the storage root."""
    import os
    import subprocess
    import sys
    import tempfile

    def complete(words: str, cwd: str | None = None, **env) -> list[str]:
        out = subprocess.run([sys.executable, "-m", "orchestrator.cli"], capture_output=True, text=True, cwd=cwd,
                             env={**os.environ, "_VLMSCALE_COMPLETE": "bash_complete", "COMP_WORDS": words,
                                  "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)), **env})
        assert out.returncode == 0, out.stderr
        return [line.split(",", 1)[1] for line in out.stdout.splitlines()]

    assert complete("vlmscale st") == ["status"]
    assert "--format" in complete("vlmscale results x --f")
    assert complete("vlmscale fit x --form ") == ["multiplicative", "additive"]
    with tempfile.TemporaryDirectory() as d:
        for name in ("alpha", "beta"):
            os.makedirs(os.path.join(d, "runs", name))
            open(os.path.join(d, "runs", name, "experiment.json"), "w").write("{}")
        os.makedirs(os.path.join(d, "runs", "not-an-experiment"))
        assert complete("vlmscale status ", cwd=d, VLMSCALE_STORAGE="runs") == ["alpha", "beta"]
        assert complete("vlmscale status --storage runs a", cwd=d) == ["alpha"]
    script = subprocess.run([sys.executable, "-m", "orchestrator.cli", "completion", "bash"], capture_output=True,
                            text=True)
    assert script.returncode == 0 and "_VLMSCALE_COMPLETE" in script.stdout and "complete " in script.stdout


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


def test_readme_points_at_what_exists():
    """The README's images and files exist, and every `vlmscale COMMAND` it shows is a command."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    text = (root / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images, "the README shows a figure from the report"
    for path in images:
        assert (root / path).is_file(), path
    code = "\n".join(re.findall(r"```.*?```", text, re.S) + re.findall(r"`([^`\n]+)`", text))  # not prose
    shown = set(re.findall(r"(?m)(?:^|\$\(|&& )vlmscale ([a-z]+)\b", code))
    assert shown and shown <= set(_subcommands()), shown - set(_subcommands())
