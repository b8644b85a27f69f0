"""``vlmscale rescore NAME``: every finished cell's benchmarks scored again from its stored answers —
after a scorer changes — without generating again; the ledger, MLflow and the fit follow.

A cell keeps its answers under ``cells/<key>/answers/<benchmark>.jsonl`` (each line the question,
its prompt, the generated answer, what the rule read and the score: workloads/benchmark_files.py).
The answers were generated under the cell's settings, which name each benchmark's scorer; the
rules are the scorers' code as it is now. A cell whose result no longer counts under the spec, an
imported cell, or one without stored answers is left as it is, and said so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from ..protocols import LedgerRecord
from ..spec import Experiment
from ..store.layout import ExperimentDir


@dataclass(frozen=True)
class Rescored:
    key: str
    changed: dict[str, tuple[float | None, float]]  # metric → (before, after), the ones that moved
    skipped: str | None = None  # why the cell was left as it is


def rescore_cell(exp_dir: ExperimentDir, key: str, record: LedgerRecord, benchmarks) -> Rescored:
    """One cell: its answers scored again, its answer files and ledger record rewritten if a score moved."""
    from workloads.benchmark_files import benchmark_metrics, mean_error, read_answers, write_answers
    from workloads.scorers import SCORERS
    from workloads.storage import path_of

    directory = exp_dir.answers(key)
    missing = [b.name for b in benchmarks if not path_of(directory / f"{b.name}.jsonl").is_file()]
    if missing:
        return Rescored(key, {}, f"no stored answers for {', '.join(missing)} (scored before answers were kept)")
    metrics = dict(record.metrics)
    rewritten = []
    for b in benchmarks:
        lines = read_answers(directory / f"{b.name}.jsonl")
        questions, predictions = [x["question"] for x in lines], [x["answer"] for x in lines]
        scored, result = SCORERS[b.scorer].evaluate(questions, predictions)
        metrics.update(benchmark_metrics(b.name, result))
        if [x.get("score") for x in lines] != [s.score for s in scored]:
            rewritten.append((b.name, questions, [x["prompt"] for x in lines], predictions, scored))
    metrics["error"] = mean_error(metrics, [b.name for b in benchmarks])
    before = record.metrics
    changed = {k: (before.get(k), v) for k, v in metrics.items() if before.get(k) != v}
    for name, questions, prompts, predictions, scored in rewritten:
        write_answers(str(directory), name, questions, prompts, predictions, scored)
    if changed:
        exp_dir.record_finished(replace(record, metrics=metrics, rescored_at=time.time()))
    return Rescored(key, changed)


def rescore(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, echo=print) -> list[Rescored]:
    """Every finished cell of the experiment (orchestrator/plan/identity.py decides which count), then
    MLflow's cell runs and a fit of the rescored results."""
    from ..plan.cells import StudyCells
    from ..plan.identity import counts
    from ..plan.rounds import RoundLog
    from ..store.lock import lock_for
    from ..tracking.tracker import Tracker, tracking_target
    from .after_round import finalize

    lock = lock_for(exp_dir.root).acquire(f"experiment {exp.name}")  # no run writes the ledger meanwhile
    try:
        finished = exp_dir.finished()
        out = []
        for _, cell in StudyCells.of(exp, exp_dir).planned():
            record = finished.get(cell.key)
            if record is None:
                continue
            if record.imported_from or not counts(record, cell):
                out.append(Rescored(cell.key, {}, "imported, or finished under other settings"))
                continue
            if not cell.config.eval.benchmarks:
                continue
            out.append(rescore_cell(exp_dir, cell.key, record, cell.config.eval.benchmarks))
        moved = [r for r in out if r.changed]
        for r in out:
            if r.skipped:
                echo(f"{r.key}: left as it is: {r.skipped}")
            elif r.changed:
                shown = ", ".join(f"{k} {_g(a)} → {_g(b)}" for k, (a, b) in sorted(r.changed.items())[:4])
                echo(f"{r.key}: {shown}{' …' if len(r.changed) > 4 else ''}")
        echo(f"{exp.name}: {len(moved)} of {sum(1 for r in out if not r.skipped)} cells rescored changed")
        tracker = Tracker(*tracking_target(exp, exp_dir))
        parent = tracker.parent_run(exp.name, exp.digest(), spec_text)
        finished = exp_dir.finished()
        for r in moved:
            record = finished[r.key]
            run_id = tracker.child_run(parent, exp.name, r.key, {}, digest=record.config_digest)
            tracker.log_metrics(run_id, {k: b for k, (_, b) in r.changed.items()},
                                record.step, force=True)
            tracker.log_cell_record(run_id, None, record, None, exp.spec.evaluation.groups, str(exp_dir.answers(r.key)))
        log = RoundLog.load(exp_dir)
        rounds = [int(x["round"]) for x in log.rounds] or [1]
        if exp.spec.fit.enabled:
            finalize(exp, exp_dir, spec_text, tracker, parent, echo, max(rounds), log.rounds)
        return out
    finally:
        lock.release()


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
