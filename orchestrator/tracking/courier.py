"""Delivering MLflow calls without ever making the driver wait: a thread of their own, in order,
retried through an outage, dropped (with a warning) when MLflow refuses them for good."""

from __future__ import annotations

import time


class Courier:
    """Delivers tracker calls in order on a thread of its own, so an MLflow outage never blocks
    the driver: calls wait in memory and are retried (backoff up to ``BACKOFF_S[-1]`` s apart) until the
    server answers. Calls MLflow refuses for good (a 4xx: bad value, already exists) are dropped
    with a warning — retrying cannot fix them. Everything delivered here is also in the
    experiment's ledger and progress files, from which a rerun backfills what a driver that died
    mid-outage never delivered (``track.reconcile``)."""

    BACKOFF_S = (0.5, 1, 2, 5, 10)
    LOCAL_TRIES = 3  # a failure that is not an outage (e.g. sqlite's disk full) is tried this often
    SLOW_S = 10.0  # a call unanswered this long is an outage worth saying (MLflow's client retries quietly)

    def __init__(self, make_tracker, echo=print):
        import queue
        import threading

        self._make, self._echo = make_tracker, echo
        self._tracker = None
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.outage_since: float | None = None
        self._busy_since: float | None = None
        self.delivered = self.dropped = 0

    def submit(self, method: str, *args, **kwargs) -> None:
        import threading

        self._queue.put((method, args, kwargs))
        busy = self._busy_since
        if busy is not None and self.outage_since is None and time.time() - busy > self.SLOW_S:
            self._down(f"no answer for {time.time() - busy:.0f} s")
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="vlmscale-mlflow-courier", daemon=True)
                self._thread.start()

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def _loop(self) -> None:
        while True:
            method, args, kwargs = self._queue.get()
            attempt = 0
            while True:
                self._busy_since = time.time()
                try:
                    if self._tracker is None:
                        self._tracker = self._make()
                    getattr(self._tracker, method)(*args, **kwargs)
                    self.delivered += 1
                    break
                except Exception as e:  # noqa: BLE001 — an outage is any failure; 4xx below are final
                    if _refused(e) or (not _transient(e) and attempt >= self.LOCAL_TRIES):
                        # a 4xx, or a store failing in itself (a full disk under sqlite) however often
                        # asked: retrying forever would hang the run's end; the ledger keeps it all
                        self.dropped += 1
                        self._echo(f"[vlmscale] MLflow refused {method}: {str(e).splitlines()[0][:200]}")
                        break
                    if self.outage_since is None:
                        self._down(type(e).__name__)
                    time.sleep(self.BACKOFF_S[min(attempt, len(self.BACKOFF_S) - 1)])
                    attempt += 1
                finally:
                    self._busy_since = None
            if self.outage_since is not None:
                self._echo(f"[vlmscale] MLflow is back after {time.time() - self.outage_since:.0f} s; "
                           f"delivering {self.pending - 1} waiting updates")
                self.outage_since = None
            self._queue.task_done()

    def _down(self, why: str) -> None:
        self.outage_since = time.time()
        self._echo(f"[vlmscale] MLflow unreachable ({why}); training goes on, its metrics wait here and are "
                   "delivered when it is back")

    def flush(self, timeout_s: float) -> int:
        """Wait until everything is delivered or ``timeout_s`` passes; returns what is left."""
        deadline = time.time() + timeout_s
        while self.pending and time.time() < deadline:
            time.sleep(0.05)
        return self.pending


def status_of(e: Exception) -> int | None:
    """The HTTP status an MlflowException stands for (None for any other exception)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(e, MlflowException):
        return None
    try:
        return int(e.get_http_status_code())
    except (TypeError, ValueError):
        return 500


def _transient(e: Exception) -> bool:
    """An outage worth waiting out: the server unreachable, timing out, or answering 5xx/429."""
    import requests

    if isinstance(e, (ConnectionError, TimeoutError, requests.exceptions.RequestException)):
        return True
    status, text = status_of(e), str(e)
    return status is not None and (status == 429 or status >= 500 and (
        "request to" in text or "Max retries" in text or "Connection" in text))


def _refused(e: Exception) -> bool:
    """MLflow answered and said no (4xx): retrying cannot help."""
    status = status_of(e)
    return status is not None and 400 <= status < 500

