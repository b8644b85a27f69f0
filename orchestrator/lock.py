"""One driver per experiment: a lock file with a heartbeat in the experiment's directory.

Two drivers on one experiment would train the same cells twice into the same checkpoints and
MLflow runs. ``DriverLock`` is taken before anything is written and released at exit:

* created with ``O_CREAT | O_EXCL`` — atomic on a local disk and on NFS (v3+), the shared volumes
  vlmscale runs on, so of two drivers started at once exactly one wins;
* the holder rewrites its heartbeat every ``heartbeat_s`` (temp file + rename); a lock whose
  heartbeat is older than ``stale_s`` belongs to a driver that is gone (a lost pod, a killed
  node) and is taken over, as is one held by a dead process on this same host (a SIGKILLed
  ``vlmscale run``), without waiting;
* a take-over renames the stale file aside first (only one renamer can succeed), then creates
  the lock exclusively — two drivers that both found it stale cannot both win;
* the refusal names the holder: host, pid, since when, and its last heartbeat.

Pure standard library: no ray, no torch.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from .spec import SpecError

LOCK_FILE = "driver.lock"
STALE_ENV = "VLMSCALE_LOCK_STALE_S"


class LockHeld(SpecError):
    """Another live driver holds the experiment (exit 2, like any input the user must change)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


class DriverLock:
    def __init__(self, directory: Path, heartbeat_s: float = 5.0, stale_s: float | None = None):
        self.path = Path(directory) / LOCK_FILE
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s if stale_s is not None else float(os.environ.get(STALE_ENV, 45))
        self.token = uuid.uuid4().hex
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.since = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the lock file --------------------------------------------------------------------------

    def _record(self) -> dict:
        return {"host": self.host, "pid": self.pid, "since": self.since, "heartbeat": time.time(),
                "token": self.token}

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self._record(), f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError):  # being written right now: treat as held, fresh
            return {"host": "?", "pid": -1, "since": time.time(), "heartbeat": time.time(), "token": "?"}

    def _is_gone(self, h: dict) -> bool:
        if time.time() - float(h.get("heartbeat", 0)) > self.stale_s:
            return True
        return h.get("host") == self.host and int(h.get("pid", -1)) > 0 and not _pid_alive(int(h["pid"]))

    def acquire(self, what: str = "the experiment") -> "DriverLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self._start_heartbeat()
                return self
            h = self.holder()
            if h is None:
                continue  # released between our two looks
            if not self._is_gone(h):
                now = time.time()
                raise LockHeld(
                    f"{what} is being run by another driver: host {h.get('host')}, pid {h.get('pid')}, since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(h.get('since', now))))} "
                    f"(last heartbeat {_ago(now - float(h.get('heartbeat', now)))}); watch it with `vlmscale status`, "
                    f"or stop it first. A driver that died releases the lock {self.stale_s:.0f} s after its last "
                    f"heartbeat ({self.path})")
            aside = self.path.with_name(f"{LOCK_FILE}.stale-{self.token}")
            try:
                os.rename(self.path, aside)  # only one of several take-overs renames this file
            except FileNotFoundError:
                continue
            try:
                if json.loads(aside.read_text()).get("token") != h.get("token"):
                    # the file changed between our read and the rename: a live holder's; put it back
                    # (link: never over a lock someone created meanwhile)
                    try:
                        os.link(aside, self.path)
                    except FileExistsError:
                        pass
                    aside.unlink(missing_ok=True)
                    continue
            except (json.JSONDecodeError, OSError):
                pass
            aside.unlink(missing_ok=True)
        raise LockHeld(f"{what}: could not take {self.path} (contended); try again")

    def owned(self) -> bool:
        h = self.holder()
        return h is not None and h.get("token") == self.token

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 1)
        if self.owned():
            self.path.unlink(missing_ok=True)

    # -- heartbeat ------------------------------------------------------------------------------

    def beat(self) -> bool:
        """Refresh the heartbeat if the lock is still ours (never resurrect a lock taken over)."""
        if not self.owned():
            return False
        tmp = self.path.with_name(f".{LOCK_FILE}.{self.token}")
        tmp.write_text(json.dumps(self._record()))
        os.replace(tmp, self.path)
        return True

    def _start_heartbeat(self) -> None:
        def loop():
            while not self._stop.wait(self.heartbeat_s):
                try:
                    self.beat()
                except OSError:  # storage hiccup: the next beat retries; stale_s spans several beats
                    pass

        self._thread = threading.Thread(target=loop, name="vlmscale-driver-lock", daemon=True)
        self._thread.start()

    def __enter__(self) -> "DriverLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
