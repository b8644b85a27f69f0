"""``vlmscale ui``: MLflow's own server over an experiment's local store, started quietly.

The server's chatter (uvicorn's access log, MLflow's warnings) goes to a log file; what the user
reads is one line: the address of the experiment's cells in the training view
(orchestrator/tracking/view.py), printed once the server answers. The experiment's view tags are
set first (with the server's own client), so a store an older vlmscale wrote opens the same way.
The server runs in its own process group, stopped whole on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ServiceError, UsageError

READY_S = 120.0  # a busy machine: the server imports MLflow before it answers


def serve(uri: str, name: str, root: str | None, port: int, log: Path, label: str) -> int:
    from .tracker import Tracker
    from .view import experiment_url, ui_base

    base = ui_base(uri, port)
    if _answers(base):
        raise UsageError(f"port {port} on 127.0.0.1 is taken (another UI?): pass --port")
    mlflow = Path(sys.executable).with_name("mlflow")
    argv = [str(mlflow) if mlflow.exists() else "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    def on_term(*_) -> None:
        _stop(proc)
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    try:
        t0 = time.time()
        experiment_id = Tracker(uri, name, root).experiment_id  # the view's tags, while the server starts
        while not _answers(base):
            if proc.poll() is not None:
                raise ServiceError(f"the MLflow server exited (code {proc.returncode}) before it answered; its log: {log}")
            if time.time() - t0 > READY_S:
                raise ServiceError(f"the MLflow server did not answer within {READY_S:.0f} s; its log: {log}")
            time.sleep(0.25)
        print(f"MLflow UI for {label}: {experiment_url(base, experiment_id)}  (ready in {time.time() - t0:.0f} s; "
              f"Ctrl-C stops it; its log: {log})", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(proc)


def _answers(base: str) -> bool:
    try:
        urllib.request.urlopen(base + "/health", timeout=1).close()
        return True
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
