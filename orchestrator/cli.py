"""``vlmscale`` — the command line.

Heavy libraries are imported inside the commands that need them, so ``validate``, ``schema``,
``results`` and ``status`` answer in well under a second. Bad input (a spec, a file, a name)
prints one line naming what is wrong and how to fix it, and exits 2 with no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input that is not a spec error: reported in one line, exit 2."""


def _print_cells(exp) -> None:
    cells = exp.cells()
    print(f"{exp.name}: {len(cells)} cells (digest {exp.digest()})")
    width = max(len(c.key) for c in cells)
    print(f"  {'cell':<{width}}  {'llm':<20} {'V':>5}  {'compressor':<10} {'task':<8} seed")
    for c in cells:
        print(f"  {c.key:<{width}}  {c.llm:<20} {c.visual_tokens:>5}  {c.compressor:<10} {c.task:<8} {c.seed}")


def cmd_validate(a) -> int:
    from .spec import load

    _print_cells(load(a.file))
    return 0


def cmd_schema(a) -> int:
    from .spec import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _run(exp, spec_text: str, a) -> int:
    from .schedule import run_experiment

    outcome = run_experiment(exp, spec_text, address=a.address, live=None if not a.plain else False)
    print(f"\n{exp.name}: {len(outcome.finished)} cells finished ({len(outcome.skipped)} from before), "
          f"{len(outcome.errored)} errored, in {outcome.seconds:.0f} s")
    for key, err in outcome.errored.items():
        print(f"  {key}: {err}")
    print(f"results:  vlmscale results {exp.name} --storage {outcome.exp_dir.root.parent}")
    print(f"MLflow:   {outcome.tracking_uri} (vlmscale ui {exp.name} --storage {outcome.exp_dir.root.parent})")
    return 0 if not outcome.errored else 1


def cmd_run(a) -> int:
    from .spec import load

    exp = load(a.file)
    return _run(exp, Path(a.file).read_text(), a)


def cmd_resume(a) -> int:
    import yaml

    from .results import locate

    exp, exp_dir = locate(a.name, a.storage)
    manifest = json.loads(exp_dir.manifest.read_text())
    return _run(exp, yaml.safe_dump(manifest["spec"], sort_keys=False), a)


def cmd_results(a) -> int:
    from .results import locate, render, rows

    exp, exp_dir = locate(a.name, a.storage)
    sys.stdout.write(render(rows(exp, exp_dir), a.format))
    return 0


def cmd_status(a) -> int:
    from .results import locate, render, rows

    exp, exp_dir = locate(a.name, a.storage)
    table = rows(exp, exp_dir)
    counts: dict[str, int] = {}
    for r in table:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{exp.name}: {len(table)} cells — {summary}; state in {exp_dir.root}")
    sys.stdout.write(render(table, "table"))
    return 0


def cmd_ui(a) -> int:
    from .results import locate
    from .schedule import tracking_target

    exp, exp_dir = locate(a.name, a.storage)
    uri, _, _ = tracking_target(exp, exp_dir)
    if not uri.startswith("sqlite:///"):
        print(f"{exp.name} tracks to {uri}: open that server's UI")
        return 0
    mlflow = Path(sys.executable).with_name("mlflow")
    argv = [str(mlflow) if mlflow.exists() else "mlflow", "ui", "--backend-store-uri", uri,
            "--host", "127.0.0.1", "--port", str(a.port), "--workers", "1"]
    print(f"MLflow UI for {exp.name}: http://127.0.0.1:{a.port}", flush=True)
    os.execvp(argv[0], argv)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlmscale", description="Scaling-law studies of vision-language models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("validate", help="check an experiment spec and print its expanded grid")
    s.add_argument("file")
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("schema", help="print the JSON Schema of the experiment spec")
    s.set_defaults(fn=cmd_schema)

    for name, fn, helptext in (("run", cmd_run, "run (or resume) an experiment on local Ray or --address"),
                               ("resume", cmd_resume, "resume an experiment by name from its storage")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("file" if name == "run" else "name")
        if name == "resume":
            s.add_argument("--storage", help="the directory holding the experiment (default ./vlmscale-runs)")
        s.add_argument("--address", default=None, help="a Ray cluster to join (default: $RAY_ADDRESS, else local)")
        s.add_argument("--plain", action="store_true", help="status lines instead of a live table")
        s.set_defaults(fn=fn)

    s = sub.add_parser("results", help="one row per cell: parameters, error, FLOPs, status")
    s.add_argument("name", help="experiment name or spec file")
    s.add_argument("--storage")
    s.add_argument("--format", choices=("table", "csv", "json"), default="table")
    s.set_defaults(fn=cmd_results)

    s = sub.add_parser("status", help="how far an experiment has got")
    s.add_argument("name", help="experiment name or spec file")
    s.add_argument("--storage")
    s.set_defaults(fn=cmd_status)

    s = sub.add_parser("ui", help="start the MLflow UI on the experiment's store (127.0.0.1)")
    s.add_argument("name", help="experiment name or spec file")
    s.add_argument("--storage")
    s.add_argument("--port", type=int, default=5000)
    s.set_defaults(fn=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    from .spec import SpecError

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (SpecError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
