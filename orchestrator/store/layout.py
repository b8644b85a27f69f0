"""Where an experiment keeps its state — every path of it is named here — and the ledger of
finished cells.

    <storage>/<name>/
        experiment.json      the validated spec and its digest (what a restarted driver resumes)
        driver.lock          who runs it now: host, pid, since, heartbeat (orchestrator/store/lock.py)
        vision/<tower>/      the pretrained tiny vision towers, one per pretraining settings (embedded default)
        cells/<key>/         checkpoints of each cell (Ray Train runs, or the trial's own), and
                             identity.json: the settings they were trained under
        superseded/          cells retrained under changed settings (`run --restart-changed`), kept
        tune/                Ray Tune experiment state (the grid's and the calibration's)
        results/<key>.json   the ledger: final metrics of every finished cell (atomic writes)
        progress/<key>.jsonl every report of each cell (live progress)
        errors/<key>.json    why a cell failed last (one line), while it is not finished
        stop                 a stop request (SIGINT, SIGTERM) the running cells see: they checkpoint and end
        defects/             data files a cell of this run failed on (orchestrator/store/defects.py)
        logs/<key>.log       every failure's full traceback, attempt by attempt
        damaged/             state files that failed their check, set aside (orchestrator/store/checks.py)
        rounds.json          the cells of every round after the grid, and each round's fit
        calibration.json     the learning rate found per LLM size; calibration/ its plots
        profile/             the inference profile: profile.json, and <digest>/ one file per point
        mlflow.db, mlartifacts/   the default local MLflow store
        fit/                 the fitted law, plots, next.yaml

The directory is local (or a mounted shared volume) or on S3 (``s3://``: workloads/storage.py);
what must be a local file (sqlite, plots before upload) lives in a local mirror of it. Pure: no
heavy imports. Every write is atomic (temp file + rename, or one object PUT), so a killed driver
leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.storage import is_remote, local_mirror, path_of, write_bytes_atomic, write_text_atomic

from ..errors import StorageError
from ..protocols import LedgerRecord, ledger_problem

LOCK_FILE = "driver.lock"
NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # metadata.name (spec/base.py's RFC 1123 label)


def atomic_write_text(path, text: str) -> None:
    write_text_atomic(path, text)


def atomic_write_json(path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class ExperimentDir:
    root: Path  # or a upath.UPath on object storage (workloads/storage.py)

    @classmethod
    def of(cls, storage: str, name: str) -> ExperimentDir:
        if len(name) > 63 or not NAME.fullmatch(name):  # a name typed on the command line becomes a path
            raise StorageError(f"{name!r} is not an experiment name (metadata.name: lowercase letters, digits and "
                               "'-'), nor a spec file (.yaml)")
        if is_remote(storage):
            return cls(path_of(storage.rstrip("/") + "/" + name))
        return cls(Path(storage).expanduser().resolve() / name)

    @classmethod
    def at(cls, root: str) -> ExperimentDir:
        """The directory a trial was handed (``str(exp_dir.root)``)."""
        return cls(path_of(root))

    @classmethod
    def names_under(cls, storage: str) -> list[str]:
        """The experiments kept under a local storage root (those with a manifest)."""
        root = Path(storage).expanduser()
        if is_remote(storage) or not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if cls(p).manifest.is_file())

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    @property
    def local(self) -> Path:
        """Where files that must be local live: the directory itself, or its cache for object storage."""
        return local_mirror(self.root) if self.remote else self.root

    # -- the tree ---------------------------------------------------------------------------------

    @property
    def manifest(self) -> Path:
        return self.root / "experiment.json"

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def vision(self) -> Path:
        return self.root / "vision"

    @property
    def cells(self) -> Path:
        return self.root / "cells"

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def progress(self) -> Path:
        return self.root / "progress"

    @property
    def rounds(self) -> Path:
        return self.root / "rounds.json"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.json"

    def calibration_plot(self, llm: str) -> tuple[Path, Path]:
        """(where it is drawn locally, where it is kept) of a size's LR-versus-loss plot."""
        name = f"calibration/{llm.replace('/', '-')}.png"
        return self.local / name, self.root / name

    @property
    def profile(self) -> Path:
        return self.root / "profile" / "profile.json"

    def profile_point(self, digest: str, key: str) -> Path:
        """One profiled architecture's rows, under the profile settings' digest."""
        return self.root / "profile" / digest / f"{key}.json"

    @property
    def fit(self) -> Path:
        return self.root / "fit"

    @property
    def fit_staging(self) -> Path:
        """Where the report is written before it is uploaded (the fit directory itself when local)."""
        return self.local / "fit" if self.remote else self.fit

    @property
    def mlflow_uri(self) -> str:
        # sqlite needs a local file: with object storage the default store stays on this machine
        return f"sqlite:///{self.local / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return (self.local / "mlartifacts").as_uri()

    def result_path(self, key: str) -> Path:
        return self.results / f"{key}.json"

    def progress_path(self, key: str) -> Path:
        return self.progress / f"{key}.jsonl"

    @property
    def stop_request(self) -> Path:
        return self.root / "stop"

    def read_manifest(self) -> dict[str, Any]:
        """experiment.json, checked: the spec the experiment runs under."""
        from .checks import manifest_problem, read

        doc = read(self.manifest, manifest_problem, f"`vlmscale repair {self.root.name}` restores it from the "
                                                   "experiment's MLflow run, or rerun `vlmscale run` with its spec file")
        if doc is None:
            raise StorageError(f"{self.manifest}: no such file")
        return doc

    def identity_path(self, key: str) -> Path:
        return self.cells / key / "identity.json"

    def answers(self, key: str) -> Path:
        """The cell's benchmark answers, one JSONL per benchmark (set aside with the cell's state)."""
        return self.cells / key / "answers"

    def superseded(self, key: str, digest: str) -> Path:
        """Where a cell's state goes when it is retrained under other settings (nothing is deleted)."""
        return self.root / "superseded" / f"{key}-{digest}"

    def error_path(self, key: str) -> Path:
        return self.root / "errors" / f"{key}.json"

    def log_path(self, key: str) -> Path:
        return self.root / "logs" / f"{key}.log"

    def publish(self, staged: Path, kept: Path) -> None:
        """Copy a file written locally (a plot, a report page) to where the experiment keeps it."""
        if staged != kept:
            write_bytes_atomic(kept, staged.read_bytes())

    # -- the ledger and progress -----------------------------------------------------------------

    def finished(self) -> dict[str, LedgerRecord]:
        """The ledger: cell key → its final record, every one checked (orchestrator/store/checks.py): a
        damaged record is a :class:`StateError` naming it, never a cell silently left out."""
        from .checks import parse, repair_fix

        if not self.results.exists():
            return {}
        paths = sorted(self.results.glob("*.json"))
        if self.remote and paths:  # one round trip for all records, not one per cell
            remote: list[Any] = paths  # universal_pathlib's paths: their file system and its paths
            blobs = remote[0].fs.cat([p.path for p in remote])
            texts = [blobs[p.path] for p in remote]
        else:
            texts = [p.read_bytes() for p in paths]
        fix = repair_fix(self.root.name)
        return {p.stem: LedgerRecord.from_dict(parse(text, p, ledger_problem, fix), p.stem) for p, text in zip(paths, texts)}

    def damaged_records(self) -> list[Path]:
        """The ledger's records that do not pass their check."""
        from .checks import StateError, parse

        out = []
        for p in sorted(self.results.glob("*.json")) if self.results.exists() else []:
            try:
                parse(p.read_bytes(), p, ledger_problem, "")
            except StateError:
                out.append(p)
        return out

    def finished_record(self, key: str) -> LedgerRecord | None:
        """One cell's ledger entry, or None."""
        from .checks import read, repair_fix

        doc = read(self.result_path(key), ledger_problem, repair_fix(self.root.name))
        return None if doc is None else LedgerRecord.from_dict(doc, key)

    def record_finished(self, record: LedgerRecord) -> None:
        atomic_write_json(self.result_path(record.key), record.to_dict())

    def cell_error(self, key: str) -> dict[str, Any] | None:
        """Why the cell failed last ({cause, transient, log, at}), or None (also for an unreadable one:
        it only explains, and the next failure rewrites it)."""
        try:
            doc = json.loads(self.error_path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        ok = isinstance(doc, dict) and isinstance(doc.get("cause"), str) and isinstance(doc.get("log", ""), str)
        return {"transient": False, "log": "", **doc} if ok else None

    def record_error(self, key: str, cause: str, transient: bool, details: str) -> None:
        """Keep a failure: its traceback appended to the cell's log, its cause as the cell's error.
        Best effort — storage that is full or gone must not hide the failure it is recording."""
        import time

        from workloads.storage import append_line

        try:
            append_line(self.log_path(key), f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} "
                                            f"({'may pass: retried' if transient else 'will recur: not retried'})\n"
                                            f"{details.rstrip()}")
            atomic_write_json(self.error_path(key), {"cause": cause, "transient": transient,
                                                     "log": str(self.log_path(key)), "at": time.time()})
        except OSError:
            pass

    def clear_error(self, key: str) -> None:
        try:
            self.error_path(key).unlink()
        except (FileNotFoundError, OSError):
            pass

    def progress_history(self, key: str) -> list[dict[str, Any]]:
        """Every report of a cell, in order (a line cut by a kill is skipped)."""
        try:
            text = self.progress_path(key).read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        if text:
            for line in text.splitlines():
                try:
                    report = json.loads(line)
                except json.JSONDecodeError:
                    continue
                step = report.get("step") if isinstance(report, dict) else None
                if isinstance(step, (int, float)) and not isinstance(step, bool):  # else not a report
                    out.append(report)
        return out

    def last_progress(self, key: str) -> dict[str, Any] | None:
        history = self.progress_history(key)
        return history[-1] if history else None

    # -- before anything is written ---------------------------------------------------------------

    def check_writable(self, probe_bytes: int = 1 << 20) -> None:
        """Refuse storage that cannot take the experiment's state (read-only, full, not a
        directory, no bucket): one clear line now, rather than a traceback from a worker an hour in."""
        probe = self.root / f".write-probe-{os.getpid()}"
        if self.remote:
            try:
                probe.write_bytes(b"\0" * 1024)
                probe.unlink()
            except (OSError, ValueError) as e:  # no bucket, no credentials, no permission
                raise StorageError(
                    f"storage {self.root.parent} cannot be written ({_first_line(e)}): check the bucket exists and "
                    "AWS_* credentials (AWS_ENDPOINT_URL for an S3-compatible server) are in the environment, or "
                    "point spec.storage.path/--storage elsewhere") from None
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as f:
                f.write(b"\0" * probe_bytes)  # a checkpoint needs room: a nearly full volume fails here
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise StorageError(f"storage {self.root.parent} cannot be written ({e.strerror or e}): point "
                               "spec.storage.path, --storage or VLMSCALE_STORAGE at a writable volume with free "
                               "space") from None
        finally:
            try:
                probe.unlink()
            except OSError:
                pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]
