"""A real `mlflow server` on 127.0.0.1 for tests, in its own process group, stopped with the group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    def __init__(self, root: Path, port: int | None = None, auth: tuple[str, str] | None = None):
        """``port``: restart a stopped server where its clients look for it (same root, same store).
        ``auth``: (admin, password) runs MLflow's basic-auth app, as the chart's mlflow.auth does."""
        self.root, self.port, self.auth = root, port or free_port(), auth
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "MlflowServer":
        mlflow = Path(sys.executable).with_name("mlflow")
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = open(self.root / "server.log", "a")
        argv = [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", "1"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        if self.auth:
            ini = self.root / "basic_auth.ini"
            ini.write_text("[mlflow]\ndefault_permission = READ\n"
                           f"database_uri = sqlite:///{self.root / 'basic_auth.db'}\nadmin_username = {self.auth[0]}\n"
                           "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
            argv.append("--app-name=basic-auth")
            env.update(MLFLOW_AUTH_CONFIG_PATH=str(ini), MLFLOW_AUTH_ADMIN_USERNAME=self.auth[0],
                       MLFLOW_AUTH_ADMIN_PASSWORD=self.auth[1], MLFLOW_FLASK_SERVER_SECRET_KEY="vlmscale-tests-" * 3)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError("mlflow server did not come up in 90 s")

    def __exit__(self, *exc) -> None:
        stop_group(self.proc)
        self.log.close()


def stop_group(proc: subprocess.Popen | None) -> None:
    """Stop a server started with ``start_new_session=True``, its children with it."""
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
