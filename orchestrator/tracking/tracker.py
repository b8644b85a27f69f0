"""MLflow tracking: one parent run per experiment, one child run per cell, found again by tags.

Runs are looked up by tags before they are created, so a restarted driver, a retried cell or a
resumed cell continues its own run — never a second one. Only the driver process writes (from a
Tune callback, through a :class:`~orchestrator.tracking.courier.Courier` so an outage never blocks it), so
a sqlite store sees a single writer. Metrics already logged for a step are not logged again when
a cell replays steps after resuming from a checkpoint; a rerun brings MLflow up to date with the
ledger (:func:`reconcile`).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from workloads.storage import download_dir, is_remote, path_of

from ..protocols import LedgerRecord
from ..store.layout import ExperimentDir

TAG_EXPERIMENT = "vlmscale.experiment"
TAG_ROLE = "vlmscale.role"
TAG_CELL = "vlmscale.cell"
TAG_DIGEST = "vlmscale.digest"
TAG_CELL_DIGEST = "vlmscale.cell_digest"  # the settings a cell's run trained under (orchestrator/plan/identity.py)
TAG_ROUND = "vlmscale.round"
TAG_LLM = "vlmscale.llm"
PARENT_TAG = "mlflow.parentRunId"
FLUSH_S = float(os.environ.get("VLMSCALE_MLFLOW_FLUSH_S", 600))  # how long a run waits at its end for MLflow
PACKAGES = ("vlmscale", "torch", "transformers", "ray", "mlflow", "deepspeed", "numpy", "pydantic")


def environment() -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            env[f"pkg.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[f"pkg.{pkg}"] = "not installed"
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=__file__.rsplit("/", 2)[0])
        env["git_sha"] = sha.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        env["git_sha"] = "unknown"
    return env




class Tracker:
    def __init__(self, tracking_uri: str, experiment_name: str, artifact_root: str | None = None):
        from mlflow.tracking import MlflowClient

        from .view import experiment_tags

        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment_name)
        if found is None:
            self.experiment_id = self.client.create_experiment(experiment_name, artifact_location=artifact_root,
                                                               tags=experiment_tags())
        else:
            self.experiment_id = found.experiment_id
            for key, value in experiment_tags().items():  # an experiment an older vlmscale made, or changed
                if found.tags.get(key) != value:
                    self.client.set_experiment_tag(self.experiment_id, key, value)
        self._last_step: dict[tuple[str, str], int] = {}  # (run, metric) → the last step MLflow has

    def _find(self, filter_string: str):
        runs = self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=2,
                                       order_by=["attributes.start_time ASC"])
        return runs[0] if runs else None

    def parent_run(self, name: str, digest: str, spec_text: str) -> str:
        """Get or create the experiment's parent run; the environment and spec are logged once."""
        run = self._find(f"tags.`{TAG_ROLE}` = 'parent' and tags.`{TAG_EXPERIMENT}` = '{name}'")
        if run is not None:
            return run.info.run_id
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={TAG_ROLE: "parent", TAG_EXPERIMENT: name, TAG_DIGEST: digest})
        run_id = run.info.run_id
        from mlflow.entities import Param

        env = environment()
        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in env.items()])
        self.client.log_text(run_id, spec_text, "spec.yaml")
        return run_id

    def child_run(self, parent_id: str, name: str, key: str, params: dict[str, Any], round_no: int | None = None,
                  digest: str | None = None) -> str:
        """Get or create a cell's run, found again by its key and the digest of its settings (a cell
        trained again under changed settings gets a run of its own); ``round_no`` tags the study round."""
        same = f" and tags.`{TAG_CELL_DIGEST}` = '{digest}'" if digest else ""
        run = self._find(f"tags.`{TAG_CELL}` = '{key}' and tags.`{TAG_EXPERIMENT}` = '{name}'{same}")
        if run is not None:
            if round_no is not None and run.data.tags.get(TAG_ROUND) is None:
                self.set_tags(run.info.run_id, {TAG_ROUND: str(round_no)})
            return run.info.run_id
        tags = {PARENT_TAG: parent_id, TAG_ROLE: "cell", TAG_CELL: key, TAG_EXPERIMENT: name}
        if digest:
            tags[TAG_CELL_DIGEST] = digest
        if round_no is not None:
            tags[TAG_ROUND] = str(round_no)
        run = self.client.create_run(self.experiment_id, run_name=key, tags=tags)
        from mlflow.entities import Param

        batch = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # MLflow's per-request limit on params
            self.client.log_batch(run.info.run_id, params=batch[i:i + 100])
        return run.info.run_id

    def mark_superseded(self, name: str, key: str, old_digest: str) -> None:
        """Tag the runs of a cell trained under other settings: kept, and no longer the cell's."""
        runs = self.client.search_runs([self.experiment_id], max_results=100, filter_string=(
            f"tags.`{TAG_CELL}` = '{key}' and tags.`{TAG_EXPERIMENT}` = '{name}'"))
        for run in runs:
            if run.data.tags.get(TAG_CELL_DIGEST, "unknown") in (old_digest, "unknown"):
                self.set_tags(run.info.run_id, {"vlmscale.status": "superseded", TAG_CELL: f"{key}~{old_digest}"})
                if run.info.status in ("RUNNING", "SCHEDULED"):
                    self.finish(run.info.run_id, "KILLED")

    def fit_run(self, parent_id: str, name: str, round_no: int = 1) -> str:
        """Get or create the fit run of a round (one per round of the experiment)."""
        run = self._find(f"tags.`{TAG_ROLE}` = 'fit' and tags.`{TAG_EXPERIMENT}` = '{name}' "
                         f"and tags.`{TAG_ROUND}` = '{round_no}'")
        if run is not None:
            return run.info.run_id
        run_name = f"{name}-fit" if round_no == 1 else f"{name}-fit-round-{round_no}"
        return self.client.create_run(self.experiment_id, run_name=run_name, tags={
            PARENT_TAG: parent_id, TAG_ROLE: "fit", TAG_EXPERIMENT: name, TAG_ROUND: str(round_no)}).info.run_id

    def profile_run(self, name: str, digest: str) -> str:
        """The experiment's inference-cost profile run (one per profile settings digest)."""
        run = self._find(f"tags.`{TAG_ROLE}` = 'profile' and tags.`{TAG_EXPERIMENT}` = '{name}' "
                         f"and tags.`vlmscale.profile` = '{digest}'")
        if run is not None:
            return run.info.run_id
        return self.client.create_run(self.experiment_id, run_name=f"{name}-profile", tags={
            TAG_ROLE: "profile", TAG_EXPERIMENT: name, "vlmscale.profile": digest}).info.run_id

    def calibration_run(self, parent_id: str, name: str, llm: str) -> str:
        """Get or create the learning-rate calibration run of one LLM size."""
        run = self._find(f"tags.`{TAG_ROLE}` = 'calibration' and tags.`{TAG_EXPERIMENT}` = '{name}' "
                         f"and tags.`{TAG_LLM}` = '{llm}'")
        if run is not None:
            return run.info.run_id
        return self.client.create_run(self.experiment_id, run_name=f"calibrate-{llm}", tags={
            PARENT_TAG: parent_id, TAG_ROLE: "calibration", TAG_EXPERIMENT: name, TAG_LLM: llm}).info.run_id

    def trial_run(self, calibration_id: str, name: str, llm: str, index: int, params: dict[str, Any]) -> str:
        """A calibration trial's run, a child of its size's calibration run."""
        run = self.client.create_run(self.experiment_id, run_name=f"calibrate-{llm}-trial-{index}", tags={
            PARENT_TAG: calibration_id, TAG_ROLE: "calibration-trial", TAG_EXPERIMENT: name, TAG_LLM: llm})
        from mlflow.entities import Param

        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def last_logged_step(self, run_id: str, metric: str = "loss") -> int:
        if (run_id, metric) not in self._last_step:
            history = self.client.get_metric_history(run_id, _metric_name(metric))
            self._last_step[(run_id, metric)] = max((m.step for m in history), default=-1)
        return self._last_step[(run_id, metric)]

    def log_metrics(self, run_id: str, metrics: dict[str, Any], step: int, force: bool = False,
                    dedup: str = "loss") -> None:
        """Log numeric metrics at ``step``; a step at or before the last one logged for the
        ``dedup`` metric is skipped (a resumed cell replays reports; a rerun refits)."""
        if not force and step <= self.last_logged_step(run_id, dedup):
            return
        self._log_batch(run_id, _metrics(metrics, step, int(time.time() * 1000)))
        self._last_step[(run_id, dedup)] = max(step, self._last_step.get((run_id, dedup), -1))

    def log_history(self, run_id: str, records: list[dict[str, Any]], dedup: str = "loss") -> int:
        """Log the reports (each with its ``step``) MLflow has not seen yet, in few requests;
        returns how many steps were delivered."""
        if not records:  # a cell that never reported: no need to ask MLflow what it has
            return 0
        last = self.last_logged_step(run_id, dedup)
        steps: dict[int, dict[str, Any]] = {}
        for r in records:
            if "step" in r and int(r["step"]) > last:
                steps.setdefault(int(r["step"]), r)  # a replayed step after a resume is the same report
        now = int(time.time() * 1000)
        self._log_batch(run_id, [m for step, r in sorted(steps.items()) for m in _metrics(r, step, now)])
        if steps:
            self._last_step[(run_id, dedup)] = max(steps)
        return len(steps)

    def _log_batch(self, run_id: str, batch: list) -> None:
        for i in range(0, len(batch), 900):  # MLflow's per-request limit is 1000 metrics
            self.client.log_batch(run_id, metrics=batch[i:i + 900])

    def log_params_once(self, run_id: str, params: dict[str, Any]) -> None:
        """Params a run does not have yet (MLflow refuses to change one)."""
        from mlflow.entities import Param

        have = self.client.get_run(run_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in have]
        if new:
            self.client.log_batch(run_id, params=new)

    def log_cell_record(self, run_id: str, config: dict[str, Any] | None, record: LedgerRecord | None,
                        text_tokens: float | None = None, groups: dict[str, list[str]] | None = None,
                        answers: str | None = None) -> None:
        """A finished cell's constants as params — its sizes, its image cost and its two inference
        FLOPs at the experiment's Q (``inference_flops_llm``, ``inference_flops_vlm``) — its groups'
        errors, its full config and checkpoint reference as the artifact cell.json, and its
        benchmarks' answers (the folder ``answers``) under answers/."""
        from ..study.results import group_errors

        if record is not None and text_tokens is not None:
            self.log_params_once(run_id, cell_params(record, text_tokens))
        if record is not None and groups:
            self.log_metrics(run_id, group_errors(record.metrics, groups), record.step, force=True)
        if answers is not None and path_of(answers).is_dir():
            with tempfile.TemporaryDirectory(prefix="vlmscale-answers-") as d:
                local = download_dir(answers, Path(d) / "answers") if is_remote(answers) else answers
                self.client.log_artifacts(run_id, str(local), "answers")
        self.client.log_dict(run_id, {"config": config, "checkpoint": record.checkpoint if record else None,
                                      "imported_from": record.imported_from if record else None}, "cell.json")

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def mark_running(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def mark_scheduled(self, run_id: str) -> None:
        self.client.update_run(run_id, status="SCHEDULED")

    def status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, path, artifact_path)

    def log_artifacts(self, run_id: str, directory: str, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, directory, artifact_path)

    def log_dict(self, run_id: str, doc: dict[str, Any], artifact_file: str) -> None:
        self.client.log_dict(run_id, doc, artifact_file)

    def log_figure(self, run_id: str, figure, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)


def _metrics(values: dict[str, Any], step: int, now: int) -> list:
    """The finite numbers of a report as MLflow metrics at ``step`` — not the cell's constants
    (its sizes, its image cost: params, workloads/cell_metrics.py), which would chart as single points."""
    from mlflow.entities import Metric

    from workloads.cell_metrics import BOOKKEEPING, is_constant

    return [Metric(_metric_name(k), float(v), now, step) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
            and not is_constant(k) and k not in BOOKKEEPING]


def cell_params(record: LedgerRecord, text_tokens: float) -> dict[str, Any]:
    """The params a finished cell's run gets: its constants and its inference FLOPs at Q."""
    from workloads.cell_metrics import is_constant

    from ..study.results import inference_flops

    m, params = record.metrics, record.params
    out = {k: _param_value(v) for k, v in m.items() if is_constant(k)}
    if "llm_params" in m and params.get("compressor"):
        flops = inference_flops({"visual_tokens": params.get("visual_tokens"), **m}, params["compressor"], text_tokens)
        out.update({k: f"{v:.6g}" for k, v in flops.items() if v is not None})
        out["text_tokens"] = f"{text_tokens:g}"
    return out


def _param_value(v: Any) -> Any:
    """Whole numbers without a trailing .0, so the runs table reads N = 18720, not 18720.0."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


CURVE_SECTION = "curves/"  # MLflow draws sections alphabetically: the training curves come first


def _metric_name(key: str) -> str:
    """A report key as MLflow names it: a training curve under ``curves/`` (its run page's first
    charts, before the one-point results), anything else as it is, made safe."""
    from workloads.cell_metrics import CURVES

    key = CURVE_SECTION + key if key in CURVES else key
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


# ------------------------------------------------------------------------------------------------
# the experiment's side


def check_reachable(uri: str, timeout_s: float = 5.0, tries: int = 2) -> None:
    """Refuse, in seconds, an MLflow server that does not answer (its client would retry for minutes)."""
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    why = ""
    for attempt in range(tries):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
            return
        except urllib.error.HTTPError:
            return  # it answered (an auth wall, an old server without /health): reachable
        except (urllib.error.URLError, OSError) as e:
            why = str(getattr(e, "reason", e))
            time.sleep(0.5 * (attempt + 1))
    from ..errors import ServiceError

    raise ServiceError(f"MLflow at {uri} is not reachable ({why}): start the server, or point "
                       "spec.tracking.mlflow_uri (or MLFLOW_TRACKING_URI) at one")


def logged_spec(uri: str, name: str) -> tuple[str, str] | None:
    """(run id, spec text) of the spec experiment ``name``'s parent run logged to the store at
    ``uri``, or None when the store has no such run (nothing is created)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    runs = client.search_runs([found.experiment_id], f"tags.`{TAG_ROLE}` = 'parent' and tags.`{TAG_EXPERIMENT}` = "
                                                     f"'{name}'", max_results=1) if found else []
    if not runs:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return runs[0].info.run_id, Path(client.download_artifacts(runs[0].info.run_id, "spec.yaml", tmp)).read_text()


def tracking_target(exp, exp_dir: ExperimentDir) -> tuple[str, str, str | None]:
    """(tracking URI, MLflow experiment name, artifact root) — the local store by default."""
    t = exp.spec.tracking
    # on a cluster the platform ConfigMap sets MLFLOW_TRACKING_URI to the release's server
    server = t.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return server or exp_dir.mlflow_uri, t.experiment_name or exp.name, None if server else exp_dir.artifact_root


def flat_params(cell) -> dict[str, Any]:
    """A cell's MLflow params: its grid point and every setting its result depends on
    (``section.field``, models and files as the spec names them: spec/cells.py)."""
    return {**cell.params(), **cell.settings}


def reconcile(tracker: Tracker, run_ids: dict[str, str], finished: dict[str, LedgerRecord],
              exp_dir: ExperimentDir, text_tokens: float, groups: dict[str, list[str]]) -> None:
    """Bring MLflow up to date with the ledger: a driver killed between a cell's last report and
    its completion callback (or while MLflow was unreachable) left that cell's run unfinished and
    its curves short, and a rerun will not train it again: the progress file fills the curves."""
    for key, record in finished.items():
        run_id = run_ids.get(key)
        if run_id is None or tracker.status(run_id) == "FINISHED":
            continue
        tracker.log_history(run_id, exp_dir.progress_history(key))
        metrics = record.metrics
        tracker.log_metrics(run_id, metrics, int(metrics.get("step", 0)))
        tracker.log_cell_record(run_id, None, record, text_tokens, groups, str(exp_dir.answers(key)))
        tags = {"vlmscale.status": "finished"}
        if record.checkpoint:
            tags["vlmscale.checkpoint"] = record.checkpoint
        if record.imported_from:
            tags["vlmscale.imported_from"] = record.imported_from
        tracker.set_tags(run_id, tags)
        tracker.finish(run_id, "FINISHED")
