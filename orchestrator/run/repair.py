"""``vlmscale repair NAME``: every damaged state file of an experiment set aside or restored, so the
next run makes it again (orchestrator/store/checks.py says what each check is). ``vlmscale run`` heals
the ledger by itself (:func:`heal_ledger`); the rest waits for this command, because making it
again costs compute (a calibration) or changes what comes next (the round log)."""

from __future__ import annotations

from ..errors import StateError
from ..store.checks import calibration_problem, manifest_problem, profile_problem, read, rounds_problem, set_aside
from ..store.layout import ExperimentDir, atomic_write_json


def heal_ledger(exp_dir: ExperimentDir, echo=print) -> list[str]:
    """Set aside every damaged ledger record: its cell is evaluated again from its final
    checkpoint on this run (no training), or trained again if it has none. Returns their keys."""
    keys = []
    for path in exp_dir.damaged_records():
        dest = set_aside(exp_dir.root, path)
        keys.append(path.stem)
        echo(f"{path}: damaged; set aside as {dest} — cell {path.stem} is evaluated again from its final checkpoint")
    return keys


def repair(exp_dir: ExperimentDir, echo=print) -> int:
    """Check every state file; set aside what is damaged (the manifest is restored from the
    experiment's MLflow run). Returns how many files were damaged."""
    fixed = len(heal_ledger(exp_dir, echo))
    for path, check, then in ((exp_dir.rounds, rounds_problem, "the next run fits the grid and proposes again; "
                                                                "proposed cells that trained keep counting"),
                              (exp_dir.calibration, calibration_problem, "the next run calibrates again"),
                              (exp_dir.profile, profile_problem, "`vlmscale profile` measures again")):
        try:
            read(path, check, "")
        except StateError as e:
            dest = set_aside(exp_dir.root, path)
            echo(f"{str(e).rstrip('; ')}; set aside as {dest}: {then}")
            fixed += 1
    try:
        exp_dir.read_manifest()
    except StateError as e:
        fixed += 1
        _restore_manifest(exp_dir, str(e), echo)
    echo(f"{exp_dir.root}: {fixed} damaged state file(s)" + (" repaired" if fixed else "; nothing to do"))
    return fixed


def _restore_manifest(exp_dir: ExperimentDir, why: str, echo) -> None:
    """experiment.json from the spec the experiment's parent MLflow run logged (the default local store)."""
    from ..spec import parse as parse_spec
    from ..spec.load import read_yaml
    from ..tracking.tracker import logged_spec

    name = exp_dir.root.name
    local = exp_dir.local / "mlflow.db"
    if not local.is_file():
        raise StateError(f"{why.split(';')[0]}; no local MLflow store to restore it from: rerun "
                         f"`vlmscale run` with the experiment's spec file (it rewrites it)")
    logged = logged_spec(exp_dir.mlflow_uri, name)
    if logged is None:
        raise StateError(f"{why.split(';')[0]}; its MLflow store has no run of {name}: rerun `vlmscale run` with "
                         "the experiment's spec file")
    run_id, text = logged
    exp = parse_spec(read_yaml(text, "the spec logged to MLflow"), "the spec logged to MLflow")
    manifest = {"name": exp.name, "digest": exp.digest(), "spec": read_yaml(text, "the spec"), "spec_yaml": text}
    assert manifest_problem(manifest) is None
    set_aside(exp_dir.root, exp_dir.manifest)
    atomic_write_json(exp_dir.manifest, manifest)
    echo(f"{why.split(';')[0]}; restored from MLflow run {run_id}'s spec.yaml (relative paths in it "
         "resolve against the current directory: pass the spec file to `run` if they moved)")
