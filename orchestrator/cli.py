"""``vlmscale`` — the command line, on Click.

The options live here; what a command does lives in ``orchestrator.commands`` (each command gets
its options as one namespace). Heavy libraries load inside the commands, so ``validate``,
``schema``, ``results`` and ``status`` answer in well under a second. Bad input (a spec, a file, a
name, an option) prints what is wrong and how to fix it and exits 2 with no traceback.

Shell completion is Click's: ``eval "$(vlmscale completion bash)"`` (or zsh, fish) completes
commands, options, choices, spec files and the experiment names found in storage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from workloads.scorers import SCORERS

from . import commands as c
from .convert import CONVERTERS
from .errors import EXIT_BAD_INPUT, BadInput
from .run.interrupts import Interrupted
from .scaling.cost import COST_MODELS
from .scaling.fit import LOSSES
from .scaling.forms import FORMS, METRIC_KINDS
from .spec.sizes import COUNTINGS
from .spec.study import FIT_DEFAULTS

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_VLMSCALE_COMPLETE"

QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",  # Tune's legacy reporter honours verbose=0: no config box, no TensorBoard hint
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no tensorboardX/CSV/JSON loggers (the ledger and MLflow keep it all)
    "TQDM_DISABLE": "1",  # no progress bars from transformers' save/load in the logs
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "RAY_DEDUP_LOGS": "1",
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # no database-setup INFO lines
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "1",  # no "View run ... at" pair per finished run
    "VLMSCALE_QUIET": "1",  # start_ray: Ray's own logging at ERROR
}


def _quiet() -> None:
    """Library chatter off (``-v`` keeps it): what a user reads is vlmscale's own output."""
    import logging

    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    for name in ("mlflow", "alembic", "ray", "optuna", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # a failed cell's traceback goes to its log under the experiment, the cause to the status line
    for name in ("ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("vlmscale")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- completion of experiment names: the user's index of runs, and the storage root ----------------

def _complete_experiment(ctx: click.Context, param: click.Parameter, incomplete: str):
    from click.shell_completion import CompletionItem

    from .spec import STORAGE_ENV
    from .store import index
    from .store.layout import ExperimentDir

    chosen = ctx.params.get("storage") or os.environ.get(STORAGE_ENV)
    names = ExperimentDir.names_under(chosen or "./vlmscale-runs")
    if not chosen:  # every experiment this user has run, wherever it lives
        names = sorted(set(names) | set(index.names()))
    specs = sorted(str(p) for p in Path(".").glob("*.y*ml")) + sorted(str(p) for p in Path(".").glob("*/*.y*ml"))
    return [CompletionItem(n) for n in names + specs if n.startswith(incomplete)]


SPEC = click.Path(dir_okay=False)  # completes files; spec.load gives the clear error for a missing one
FORCE = click.option("--force", is_flag=True, help="accept a grid beyond the sanity caps (5,000 cells, 5e7 cell-steps)")


def _opts(*decorators: Callable) -> Callable:
    def apply(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply


def _format(*choices: str) -> Callable:
    return click.option("--format", type=click.Choice(choices or ("table", "json", "csv")), default="table",
                        help="output format")


STORAGE = click.option("--storage", metavar="DIR",
                       help="the storage root holding the experiment (default: $VLMSCALE_STORAGE, else the spec's "
                            "storage.path beside the spec file; for a name, where your runs recorded it "
                            "($XDG_STATE_HOME/vlmscale), else ./vlmscale-runs)")
EXPERIMENT = _opts(click.argument("name", shell_complete=_complete_experiment), STORAGE)


def _cluster(flag: bool = True) -> Callable:
    opts = [click.option("--cluster", is_flag=True, help="ask the Kubernetes cluster")] if flag else []
    return _opts(*opts,
                 click.option("--namespace", help="the namespace (default: spec.kubernetes.namespace)"),
                 click.option("--kubeconfig", type=click.Path(dir_okay=False),
                              help="kubeconfig file (default: in-cluster config, else $KUBECONFIG / ~/.kube/config)"),
                 click.option("--context", help="the kubeconfig context (default: the current one)"))


def _spec_default(name: str) -> str:
    """How --help names a fit setting's default: the spec's, else the one default (spec/study.py)."""
    value = FIT_DEFAULTS[name]
    return f"default: the spec's fit.{name}, else {value:g}" if isinstance(value, float) else \
        f"default: the spec's fit.{name}, else {value}"


def _analysis_opts(source_optional: bool = False) -> Callable:
    return _opts(
        click.argument("source", required=not source_optional, shell_complete=_complete_experiment),
        STORAGE,
        click.option("--form", type=click.Choice(list(FORMS)), help=f"the law ({_spec_default('form')})"),
        click.option("--law", metavar="EXPR|FILE",
                     help="a law written as an expression over inputs and parameters, e.g. 'E + A/N**alpha + "
                          "B/D**beta' (its parameters' ranges with --param), or a YAML file of one (FILE.yaml, or "
                          "FILE.yaml:NAME); default: the spec's fit.law, else --form"),
        click.option("--param", multiple=True, metavar="NAME=LO,HI",
                     help="an expression parameter's range (NAME=log:LO,HI for a positive scale fitted in log); "
                          "repeat for each"),
        click.option("--floor", metavar="NAME", help="the expression parameter kept below the smallest value"),
        click.option("--per-group", metavar="P,Q",
                     help="parameters that take a value per --group value, the others shared: one joint fit"),
        click.option("--at", multiple=True, metavar="NAME=VALUE",
                     help="hold a law's input other than N and V at VALUE for the frontier (repeat for each)"),
        click.option("--loss", type=click.Choice(list(LOSSES)),
                     help=f"the fitting objective ({_spec_default('loss')})"),
        click.option("--metric", help=f"the column to fit, e.g. eval_loss, or several (a law each) such as "
                                      f"loss_1,loss_2 ({_spec_default('metric')})"),
        click.option("--inputs", metavar="COL,COL",
                     help="a table's two input columns for a built-in form (default llm_params,visual_tokens: N and "
                          "V); an expression names its own"),
        click.option("--group", metavar="COL",
                     help="fit one law per value of this column (a table's, or a cell's such as compressor); with "
                          "--per-group one joint law"),
        click.option("--metric-kind", type=click.Choice(list(METRIC_KINDS)),
                     help="error: a rate in (0, 1); loss: any positive value; value: any number (default: the "
                          "spec's fit.metric_kind, else loss if the name has 'loss')"),
        click.option("--parameters", type=click.Choice(list(COUNTINGS)),
                     help=f"what an experiment's N counts: measured non-embedding or total parameters, or the "
                          f"models' nominal sizes ({_spec_default('parameters')})"),
        click.option("--ci-level", type=float, help=f"bootstrap interval coverage ({_spec_default('ci_level')})"),
        click.option("--no-cross-validation", is_flag=True, help="skip leave-one-out and the largest-N hold-out"),
        click.option("--text-tokens", type=float,
                     help=f"Q of every FLOPs figure, 2·N·(Q + V); 0 for cached text ({_spec_default('text_tokens')})"),
        click.option("--bootstrap", type=int, help=f"bootstrap resamples ({_spec_default('bootstrap')})"),
        click.option("--seed", type=int, default=0, show_default=True, help="seed of the bootstrap"),
    )


COST_SYNTAX = ", ".join(k.syntax for k in COST_MODELS.values())
COST = click.option("--cost", "cost_model", metavar="MODEL", default="flops",
                    help=f"the frontier's inference cost: {COST_SYNTAX} (measured ones come from `vlmscale profile`, "
                         "interpolated in N and V; BATCH defaults to the smallest profiled)")


RUN_OPTS = _opts(
    STORAGE,
    click.option("--address", help="a Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)"),
    click.option("--plain", is_flag=True,
                 help="a line per cell as it trains (step, loss, samples/s, ETA) instead of the live table"),
    click.option("--rounds", type=int, metavar="R",
                 help="rounds in all: the grid, then R-1 rounds of proposed cells (default: spec.rounds.count)"),
    click.option("--restart-changed", is_flag=True,
                 help="train again, into new MLflow runs, the cells whose results or checkpoints were made under "
                      "other settings (their old state is kept under superseded/); without it such a run is refused"),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True,
                               "max_content_width": 110})
@click.version_option(_version(), "--version", prog_name="vlmscale", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="keep the libraries' logs (Ray, Tune, MLflow)")
def cli(verbose: bool) -> None:
    """Scaling-law studies of vision-language models: a declarative grid of LLM size x visual
    tokens, trained on Ray, tracked in MLflow, fitted, and extended where the law is least sure."""
    if not verbose:
        _quiet()


def _command(name: str, fn: Callable[[argparse.Namespace], int], help: str, *params: Callable) -> None:
    """Register ``fn`` (a function of the options' namespace) as ``vlmscale NAME``."""
    def callback(**options) -> int:
        return fn(argparse.Namespace(**options))

    callback.__doc__ = help
    cli.command(name, help=help)(_opts(*params)(callback))


_command("validate", c.cmd_validate, "Check an experiment spec, its models and data files, and print its "
         "expanded grid.",
         click.argument("file", type=SPEC), FORCE,
         click.option("--syntax-only", is_flag=True,
                      help="check the spec and its grid only, not its models and data (which may live on a cluster)"),
         click.option("--deep", is_flag=True,
                      help="also decode every training image (in parallel, with a progress line); by default "
                           "validate checks that each exists"),
         _format())
_command("schema", c.cmd_schema, "Print the JSON Schema of the experiment spec.")
_command("run", c.cmd_run, "Run (or resume) an experiment on a local Ray, or the cluster at --address.",
         click.argument("file", type=SPEC), FORCE, RUN_OPTS)
_command("resume", c.cmd_resume, "Resume an experiment by name from its storage.",
         click.argument("name", shell_complete=_complete_experiment), RUN_OPTS)
_command("results", c.cmd_results, "One row per cell: parameters, error, FLOPs, status.", EXPERIMENT, _format())
_command("status", c.cmd_status, "How far an experiment has got (locally, or --cluster).",
         EXPERIMENT, _cluster(), _format())
_command("rescore", c.cmd_rescore, "Score every finished cell's benchmarks again from its stored answers (after a "
         "scorer changed), without generating; the ledger, MLflow and the fit follow.", EXPERIMENT)
_command("convert-benchmark", c.cmd_convert_benchmark, "Write a benchmark's own release (its public layout, or "
         "LLaVA-1.5's evaluation files) as the questions file its scorer reads.",
         click.argument("kind", type=click.Choice([k for k in SCORERS if k in CONVERTERS])),
         click.argument("sources", nargs=-1, required=True, type=click.Path()),
         click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="the questions file (JSONL)"),
         click.option("--images", type=click.Path(file_okay=False),
                      help="where images embedded in the release are written (default: beside the output)"),
         click.option("--categories", metavar="A,B", help="pope: the categories to keep (random, popular, adversarial)"),
         click.option("--split", help="scienceqa: the split of pid_splits.json (default test)"))
_command("repair", c.cmd_repair, "Check every state file of an experiment; set aside (or restore) what is "
         "damaged, so the next run makes it again.", EXPERIMENT)
_command("render", c.cmd_render, "Print the Kubernetes objects of an experiment (a YAML stream).",
         click.argument("file", type=SPEC), FORCE,
         click.option("--image", help="runtime image (default: spec.kubernetes.image)"),
         click.option("--namespace", help="the namespace (default: spec.kubernetes.namespace)"))
_command("submit", c.cmd_submit, "Create the experiment on a cluster as a KubeRay RayJob.",
         click.argument("file", type=SPEC), FORCE,
         click.option("--image", help="runtime image (default: spec.kubernetes.image)"),
         click.option("--rounds", type=int, metavar="R",
                      help="run the study in R rounds inside the RayJob (sets spec.rounds.count)"),
         _cluster(flag=False))
_command("logs", c.cmd_logs, "The driver's logs on the cluster (--cluster).",
         EXPERIMENT, click.option("--tail", type=int, default=200, help="lines from the end of each pod's log"),
         _cluster())
_command("delete", c.cmd_delete, "Delete the experiment's RayJob and ConfigMap from the cluster (--cluster).",
         EXPERIMENT, _cluster())
_command("fit", c.cmd_fit, "Fit the scaling law with intervals, and the compute-optimal frontier.",
         _analysis_opts(), COST, _format())
_command("frontier", c.cmd_frontier, "The optimal LLM size and visual tokens at each inference budget, under "
         "FLOPs or measured latency/memory (--cost).", _analysis_opts(), COST, _format())
_command("propose", c.cmd_propose, "The next most informative cells as a ready-to-run spec, or the next rows "
         "of a pool of candidate runs (--pool); exit 3, writing nothing, when no candidate is left.",
         _analysis_opts(source_optional=True),
         click.option("-k", type=int, default=4, help="how many cells (rows per group with --pool) to propose"),
         click.option("--budget", help="cap on the picks' cost: for an experiment training FLOPs (1e21) or GPU "
                                       "hours on spec.price's accelerator (200gpuh), default spec.fit.budget; with --pool a "
                                       "cost or a share of each group's pool cost such as 10% (observed and pending "
                                       "rows count as spent)"),
         click.option("--pool", metavar="TABLE", type=click.Path(dir_okay=False),
                      help="CSV/Parquet of candidate runs: inputs, the metric where observed, optionally "
                           "status=pending"),
         click.option("--cost", metavar="MODEL|EXPR",
                      help=f"for an experiment, the frontier's inference cost: {COST_SYNTAX} (flops by default; the "
                           "measured ones from `vlmscale profile`); with --pool, a cost column or arithmetic over "
                           "columns, e.g. '6*N*D'"),
         click.option("--target", metavar="TABLE", type=click.Path(dir_okay=False),
                      help="with --pool: rows whose prediction matters (default: the law's parameters)"),
         click.option("-o", "--output", type=click.Path(dir_okay=False),
                      help="where to write the picks (default next.yaml, or next.csv with --pool)"),
         _format())
_command("report", c.cmd_report, "Plots (PNG, SVG) and an HTML page of the fit; with a profile, the FLOPs "
         "and the measured-latency frontiers side by side.",
         _analysis_opts(), COST,
         click.option("-k", type=int, default=4, help="proposals shown in the report"),
         click.option("-o", "--output", default="report", type=click.Path(file_okay=False),
                      help="the report's directory"))
_command("profile", c.cmd_profile, "Measure prefill/decode latency and peak memory of every LLM x V x "
         "compressor (random weights) on the spec's profile resources.",
         click.argument("file", type=SPEC), STORAGE,
         click.option("--address", help="a Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)"),
         click.option("--fresh", is_flag=True, help="measure every point again (default: only what is missing)"),
         _format())
_command("ui", c.cmd_ui, "Start the MLflow UI on the experiment's store (127.0.0.1).",
         EXPERIMENT, click.option("--port", type=int, default=5000, help="port of the UI on 127.0.0.1"))


@cli.command("completion", short_help="Print the shell-completion script (bash, zsh, fish).")
@click.argument("shell", type=click.Choice(SHELLS), default="bash")
def completion(shell: str) -> int:
    """Print the shell-completion script: eval "$(vlmscale completion bash)" in ~/.bashrc (zsh and
    fish alike)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # click.Choice admits only the shells click completes
    click.echo(cls(cli, {}, "vlmscale", COMPLETE_VAR).source())
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        rv = cli.main(args=argv, prog_name="vlmscale", complete_var=COMPLETE_VAR, standalone_mode=False)
    except click.ClickException as e:  # a bad option or value: Click's usage line and message, exit 2
        e.show()
        return e.exit_code
    except Interrupted as e:  # SIGINT/SIGTERM during `run`: the cells checkpointed, MLflow says KILLED
        print(f"[vlmscale] {e}", file=sys.stderr)
        return e.exit_code
    # bad input — and a value refused deep inside a library, which is bad input we did not foresee
    except (BadInput, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.Abort as e:  # Click turns Ctrl-C into Abort — and an EOFError from deep inside too
        if isinstance(e.__cause__, EOFError):
            print(f"error: {_what_failed(e.__cause__)}", file=sys.stderr)
            return 1
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vlmscale results X | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # storage full or gone mid-run: what and where, not a traceback
        print(f"error: {_what_failed(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 — only MLflow's own failures (its store full, say) end here quietly
        from mlflow.exceptions import MlflowException

        if not isinstance(e, MlflowException):
            raise
        from .tracking.courier import status_of

        status = status_of(e)
        if status in (401, 403):  # credentials: something the user sets, not an outage
            print(f"error: the MLflow server refused vlmscale ({status} "
                  f"{'unauthenticated' if status == 401 else 'forbidden'}): set MLFLOW_TRACKING_USERNAME and "
                  "MLFLOW_TRACKING_PASSWORD for a server with basic auth (on Kubernetes they come from the Secret "
                  "named by spec.kubernetes.mlflow_auth_secret)", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"error: MLflow: {_what_failed(e)}", file=sys.stderr)
        return 1
    return rv if isinstance(rv, int) else 0


def _what_failed(e: BaseException) -> str:
    if isinstance(e, OSError):
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        what = f"{type(e).__name__}: {e.strerror or e}{where}"
    else:  # the telling line of a long message (sqlalchemy's carry the SQL and a URL)
        lines = [line for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        what = next((line for line in lines if line.startswith("(sqlite3") or "Error:" in line), lines[0])[:300]
    return what + "; finished cells are kept in the ledger — fix the cause and run the same command again to resume"


def entry() -> None:
    """The ``vlmscale`` program: :func:`main`, then an exit that skips tearing the interpreter down.

    After a run, freeing the modules and objects of torch, Ray's core worker and MLflow takes about
    3 s of a 40 s study on 2 cores and does nothing the operating system will not. The exit comes
    last: its handler is registered before any library's (they load inside the commands), and
    handlers run newest first — so Ray's, MLflow's and multiprocessing's have run, and Python has
    joined its non-daemon threads, before it."""
    import atexit

    outcome = [1]  # an uncaught exception prints its traceback and exits 1, as Python would
    atexit.register(_leave, outcome)
    try:
        outcome[0] = main()
    except SystemExit as e:  # Click's shell completion exits from inside main()
        outcome[0] = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        raise
    sys.exit(outcome[0])


def _leave(outcome: list[int]) -> None:
    import logging

    logging.shutdown()  # registered with atexit before us (logging loads first), so it would run after
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(outcome[0])


if __name__ == "__main__":
    entry()
