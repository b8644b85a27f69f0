"""The commands about an experiment's own state: validate, schema, run, resume, results, status, ui."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import UsageError
from ..plan.price import study_price
from ..spec import json_schema, load
from ..spec.checks import check_artifacts
from ..spec.limits import check_scale
from ..study.results import find_experiment, format_table, rows


def _print_cells(exp) -> None:
    cells = exp.cells()
    print(f"{exp.name}: {len(cells)} cells (digest {exp.digest()})")
    width = max(len(c.key) for c in cells)
    print(f"  {'cell':<{width}}  {'llm':<20} {'V':>5}  {'compressor':<10} {'task':<8} seed")
    for c in cells:
        print(f"  {c.key:<{width}}  {c.llm:<20} {c.visual_tokens:>5}  {c.compressor:<10} {c.task:<8} {c.seed}")


def cmd_validate(a) -> int:
    exp = load(a.file)
    check_scale(exp, a.force)
    if a.syntax_only and a.deep:
        raise UsageError("--deep decodes the data's images; --syntax-only reads no data: give one of them")
    if not a.syntax_only:
        check_artifacts(exp, a.file, deep=a.deep)
    price = study_price(exp)
    if a.format == "json":
        print(json.dumps({"name": exp.name, "digest": exp.digest(), "cells": [c.params() for c in exp.cells()],
                          "price": price.as_dict()}, indent=2))
    elif a.format == "csv":
        flops = {c.key: c.flops for c in price.cells}
        sys.stdout.write(format_table([{**c.params(), "train_flops": flops[c.key]} for c in exp.cells()], "csv"))
    else:
        _print_cells(exp)
        print("\n".join(price.lines()))
    return 0


def cmd_schema(a) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _run(exp, spec_text: str, a, storage: str) -> int:
    from ..run.driver import run_experiment

    if a.rounds is not None and a.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {a.rounds}")
    if a.plain or not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # Ray's forwarded warnings without raw colour codes
    outcome = run_experiment(exp, spec_text, address=a.address, live=None if not a.plain else False,
                             rounds=a.rounds, storage=storage, restart_changed=a.restart_changed)
    print(f"\n{exp.name}: {len(outcome.finished)} cells finished ({len(outcome.skipped)} from before), "
          f"{len(outcome.errored)} errored, in {outcome.seconds:.0f} s")
    for key, cause in outcome.errored.items():
        print(f"  {key}: {cause}  (log: {outcome.exp_dir.log_path(key)})")
    print(f"results:  vlmscale results {_named(exp.name, outcome.exp_dir)}")
    print(f"MLflow:   {_mlflow_line(exp.name, outcome)}")
    return 0 if not outcome.errored else 1


def _named(name: str, exp_dir) -> str:
    """How a command names the experiment: the bare name where it resolves to this storage, else with --storage."""
    from ..errors import StorageError
    from ..store.index import canonical, resolve

    try:
        if canonical(resolve(name)) == canonical(str(exp_dir.root.parent)):
            return name
    except StorageError:  # the name is kept in two places: say which
        pass
    return f"{name} --storage {exp_dir.root.parent}"


def _mlflow_line(name: str, outcome) -> str:
    from ..tracking.view import experiment_url, ui_base

    url = experiment_url(ui_base(outcome.tracking_uri), outcome.experiment_id)
    if outcome.tracking_uri.startswith(("http://", "https://")):
        return url
    return f"vlmscale ui {_named(name, outcome.exp_dir)}, then {url}"


def cmd_run(a) -> int:
    exp = load(a.file)
    check_scale(exp, a.force)
    check_artifacts(exp, a.file)  # before anything is written or started
    return _run(exp, Path(a.file).read_text(), a, exp.storage_root(a.storage))


def cmd_resume(a) -> int:
    import yaml

    exp, exp_dir = find_experiment(a.name, a.storage)
    check_artifacts(exp)
    manifest = exp_dir.read_manifest()
    return _run(exp, manifest.get("spec_yaml") or yaml.safe_dump(manifest["spec"], sort_keys=False), a,
                str(exp_dir.root.parent))


def cmd_results(a) -> int:
    exp, exp_dir = find_experiment(a.name, a.storage)
    sys.stdout.write(format_table(rows(exp, exp_dir), a.format))
    return 0


def cmd_convert_benchmark(a) -> int:
    from ..convert import convert

    options = {}
    if a.categories:
        options["categories"] = tuple(c.strip() for c in a.categories.split(",") if c.strip())
    if a.split:
        options["split"] = a.split
    try:
        n, images = convert(a.kind, list(a.sources), a.output, a.images, **options)
    except TypeError as e:  # an option its converter does not take
        raise UsageError(f"convert-benchmark {a.kind}: {e}") from None
    root = f", image_root: {images}" if images else ", image_root: <the release's image folder>"
    print(f"wrote {n} questions to {a.output}{f' and their images to {images}' if images else ''}\n"
          f"in the spec: {{name: {a.kind}, questions: {a.output}, scorer: {a.kind}{root}}}")
    return 0


def cmd_rescore(a) -> int:
    import yaml

    from ..run.rescore import rescore

    exp, exp_dir = find_experiment(a.name, a.storage)
    manifest = exp_dir.read_manifest()
    rescore(exp, exp_dir, manifest.get("spec_yaml") or yaml.safe_dump(manifest["spec"], sort_keys=False))
    return 0


def cmd_repair(a) -> int:
    from ..run.repair import repair
    from ..store.index import resolve
    from ..store.layout import ExperimentDir

    p = Path(a.name)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        exp = load(p)
        exp_dir = ExperimentDir.of(exp.storage_root(a.storage), exp.name)
    else:  # by name: its experiment.json may be what is damaged, so the directory alone is looked up
        exp_dir = ExperimentDir.of(resolve(a.name, a.storage), a.name)
    if not exp_dir.root.exists():
        raise UsageError(f"no experiment {a.name!r} under {exp_dir.root.parent}: pass --storage with the directory "
                         "that holds it")
    repair(exp_dir)
    return 0


def cmd_status(a) -> int:
    if a.cluster:
        from ..kube.submit import status
        from .kube import cluster_experiment

        exp, api = cluster_experiment(a)
        st = status(exp, api, a.namespace)
        print(f"{exp.name}: job {st['jobStatus']}, deployment {st['deploymentStatus']}"
              f"{', cluster ' + st['rayCluster'] if st['rayCluster'] else ''}; rayjob/{st['name']} in {st['namespace']}"
              f"{(' — ' + st['message']) if st['message'] else ''}")
        return 0
    exp, exp_dir = find_experiment(a.name, a.storage)
    table = rows(exp, exp_dir)
    counts: dict[str, int] = {}
    for r in table:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    from ..plan.calibration import chosen_lrs

    lrs = chosen_lrs(exp_dir)
    checks = _forecast_checks(exp_dir)
    from ..plan.cells import StudyCells
    from ..plan.price import study_price

    price = study_price(exp, [c for _, c in StudyCells.of(exp, exp_dir).planned()])
    finished = {r["cell"] for r in table if r["status"] == "finished"}
    if a.format == "json":
        print(json.dumps({"name": exp.name, "state": str(exp_dir.root), "counts": counts, "learning_rates": lrs,
                          "forecast_checks": [c.as_dict() for c in checks],
                          "compute": {**{k: v for k, v in price.as_dict().items() if k != "cells"},
                                      "spent_flops": sum(c.flops or 0 for c in price.cells if c.key in finished),
                                      "left_flops": sum(c.flops or 0 for c in price.cells if c.key not in finished)},
                          "cells": table}, indent=2))
        return 0
    if a.format == "csv":
        sys.stdout.write(format_table(table, "csv"))
        return 0
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{exp.name}: {len(table)} cells — {summary}; state in {exp_dir.root}")
    if lrs:
        print("calibrated learning rates: " + ", ".join(f"{llm} {lr:.3g}" for llm, lr in lrs.items()))
    print("\n".join(price.spent_and_left(finished)))
    sys.stdout.write(format_table(table, "table"))
    for r in table:
        if r.get("cause"):
            print(f"{r['cell']}: {r['cause']}" + (f"  (log: {r['log']})" if r.get("log") else ""))
    for c in checks:  # how the law's forecasts for each proposed round fared
        print(c.sentence())
    return 0


def _forecast_checks(exp_dir):
    """Each fitted round's check of the forecasts made for its cells (rounds.json)."""
    from ..plan.rounds import RoundLog
    from ..scaling.forecast import ForecastCheck

    return [ForecastCheck.from_dict(r["fit"]["forecast_check"]) for r in RoundLog.load(exp_dir).rounds
            if (r.get("fit") or {}).get("forecast_check")]


def cmd_ui(a) -> int:
    """MLflow's UI over the experiment's local store, quiet: its log goes to a file, one line with
    the address of the experiment's cells is printed once the server answers; Ctrl-C stops it."""
    from ..tracking.tracker import Tracker, tracking_target
    from ..tracking.view import experiment_url, ui_base

    exp, exp_dir = find_experiment(a.name, a.storage)
    uri, name, root = tracking_target(exp, exp_dir)
    if not uri.startswith("sqlite:///"):
        tracker = Tracker(uri, name, root)
        print(f"{exp.name} tracks to {uri}: {experiment_url(ui_base(uri), tracker.experiment_id)}")
        return 0
    from ..tracking.ui import serve

    return serve(uri, name, root, a.port, exp_dir.local / "logs" / "mlflow-ui.log", exp.name)
