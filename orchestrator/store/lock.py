"""One driver per experiment: a lock file with a heartbeat in the experiment's directory.

Two drivers on one experiment would train the same cells twice into the same checkpoints and
MLflow runs. ``DriverLock`` is taken before anything is written and released at exit:

* created whole by hard-linking a private file to the lock's name (``O_CREAT | O_EXCL`` where a
  filesystem has no hard links) — atomic on a local disk and on NFS, the shared volumes vlmscale
  runs on, so of two drivers started at once exactly one wins, and the loser reads who;
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

from ..errors import BadInput, StorageError
from .layout import LOCK_FILE

STALE_ENV = "VLMSCALE_LOCK_STALE_S"


class LockHeld(BadInput):
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


UNREADABLE_GRACE_S = 2.0  # how long an unreadable lock may be one being written


def checked(text: bytes, written: float) -> dict:
    """A lock's record, validated: host, pid, since, heartbeat and token of the right types; else
    (empty, cut short, garbage) one marked unreadable, dated when it was written."""
    try:
        h = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        h = None
    types: dict[str, type | tuple[type, ...]] = {"host": str, "pid": int, "since": (int, float),
                                                 "heartbeat": (int, float), "token": str}
    if isinstance(h, dict) and all(isinstance(h.get(k), t) and not isinstance(h.get(k), bool) for k, t in types.items()):
        return h
    return {"host": "?", "pid": -1, "since": written, "heartbeat": written, "token": "?", "unreadable": True}


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

    def _prepare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _record(self) -> dict:
        return {"host": self.host, "pid": self.pid, "since": self.since, "heartbeat": time.time(),
                "token": self.token}

    def _write_record(self, f) -> None:
        json.dump(self._record(), f)
        f.flush()
        os.fsync(f.fileno())

    def _create(self) -> bool:
        """Create the lock whole: the record goes to a private file that is then hard-linked to
        the lock's name (atomic, and fails if the name exists — the classic NFS-safe lock), so
        no reader ever sees it empty or half-written. A filesystem without hard links falls
        back to ``O_EXCL``, where a reader may catch the record mid-write (``acquire`` waits)."""
        tmp = self.path.with_name(f".{LOCK_FILE}.new-{self.token}")
        try:
            with open(tmp, "w") as f:
                self._write_record(f)
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            # on NFS a link whose reply was lost is sent again and answers EEXIST though the first
            # one made it: then the private file has two names
            return os.stat(tmp).st_nlink == 2
        except OSError:  # no hard links here (some FUSE and SMB mounts)
            return self._create_exclusive()
        finally:
            tmp.unlink(missing_ok=True)

    def _create_exclusive(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            self._write_record(f)
        return True

    def holder(self) -> dict | None:
        try:
            text = self.path.read_bytes()
            written = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        except OSError:
            written, text = time.time(), b""
        return checked(text, written)

    def _is_gone(self, h: dict) -> bool:
        if h.get("unreadable"):  # written whole within milliseconds: an old unreadable lock is no one's
            return time.time() - h["heartbeat"] > UNREADABLE_GRACE_S
        if time.time() - float(h.get("heartbeat", 0)) > self.stale_s:
            return True
        return h.get("host") == self.host and int(h.get("pid", -1)) > 0 and not _pid_alive(int(h["pid"]))

    def _settled_holder(self) -> dict | None:
        """The holder, read again while its record is unreadable but may be being written this
        instant (for at most the grace), so a refusal names the holder rather than nobody."""
        h = self.holder()
        while h is not None and h.get("unreadable") and not self._is_gone(h):
            time.sleep(0.05)
            h = self.holder()
        return h

    def acquire(self, what: str = "the experiment") -> DriverLock:
        self._prepare()
        for _ in range(5):
            if self._create():
                self._start_heartbeat()
                return self
            h = self._settled_holder()
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
            if self._take_over(h):
                self._start_heartbeat()
                return self
        raise LockHeld(f"{what}: could not take {self.path} (contended); try again")

    def _take_over(self, h: dict) -> bool:
        """Remove the stale lock ``h`` if it is still that one; True if it is now ours (never here:
        the caller then creates it exclusively)."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{self.token}")
        try:
            os.rename(self.path, aside)  # only one of several take-overs renames this file
        except FileNotFoundError:
            return False
        try:
            if checked(aside.read_bytes(), 0.0)["token"] != h.get("token"):
                # the file changed between our read and the rename: a live holder's; put it back
                # (link: never over a lock someone created meanwhile)
                try:
                    os.link(aside, self.path)
                except FileExistsError:
                    pass
        except OSError:
            pass
        aside.unlink(missing_ok=True)
        return False

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
                except Exception:  # noqa: BLE001 — storage hiccup (a file system or S3): the next beat retries; stale_s spans several beats
                    pass

        self._thread = threading.Thread(target=loop, name="vlmscale-driver-lock", daemon=True)
        self._thread.start()

    def __enter__(self) -> DriverLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class ObjectLock(DriverLock):
    """The same lock on S3 (or an S3-compatible store), with conditional writes instead of
    ``O_EXCL`` and rename: create is ``PutObject If-None-Match: *`` (of two creators one gets
    412), a take-over of a stale lock and every heartbeat are ``PutObject If-Match: <ETag it
    read>`` (of two take-overs of one stale lock one wins; a holder whose lock was taken over
    finds out at its next beat and never writes over the new owner), release is a conditional
    delete. S3 has offered these since 2024 (and so do MinIO and moto).

    Not every store that accepts the headers honours them atomically (moto checks, then writes,
    without a lock; some stores ignore them): so a write that was accepted is only a claim. The
    driver waits ``settle_s``, reads the lock back and holds it only if the object is still the
    one it wrote (its token and ETag) — of claims racing within that interval, only the last
    writer's survives, and exactly one driver finds its own. Before the first claim, a probe
    refuses a store that ignores ``If-None-Match`` altogether (one line, naming it)."""

    SETTLE_ENV = "VLMSCALE_LOCK_SETTLE_S"

    def __init__(self, url: str, heartbeat_s: float = 5.0, stale_s: float | None = None,
                 settle_s: float | None = None):
        super().__init__(Path("."), heartbeat_s, stale_s)
        self.settle_s = settle_s if settle_s is not None else float(os.environ.get(self.SETTLE_ENV, 1.0))
        bucket_and_key = url.rstrip("/").split("://", 1)[1] + "/" + LOCK_FILE
        self.bucket, self.key = bucket_and_key.split("/", 1)
        self.url = f"s3://{self.bucket}/{self.key}"
        self.path = self.url  # type: ignore[assignment]  # what messages name: the object's URL, not a local path
        self.etag: str | None = None  # of the lock object as we last wrote it
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import botocore.session

            # credentials and endpoint (AWS_ENDPOINT_URL) from the environment, as s3fs and pyarrow take them
            self._client = botocore.session.get_session().create_client("s3")
        return self._client

    def _prepare(self) -> None:
        self._check_conditional_writes()

    def _put(self, key: str | None = None, body: bytes | None = None, **condition) -> str | None:
        """PutObject (conditionally); the new ETag, or None when the condition failed."""
        from botocore.exceptions import ClientError

        try:
            r = self.client.put_object(Bucket=self.bucket, Key=key or self.key,
                                       Body=body if body is not None else json.dumps(self._record()).encode(),
                                       **condition)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404"):
                return None
            raise
        return r["ETag"]

    def _claim(self, **condition) -> bool:
        """Write the lock under ``condition``, let concurrent claims land, and keep it only if the
        object read back is still ours."""
        etag = self._put(**condition)
        if etag is None:
            return False
        time.sleep(self.settle_s)
        found = self._read()
        if found is None or found[0].get("token") != self.token or found[1] != etag:
            return False
        self.etag = etag
        return True

    def _check_conditional_writes(self) -> None:
        """Refuse a store that accepts ``If-None-Match: *`` over an existing object: there the lock
        cannot hold (two drivers would both run)."""
        probe = f"{self.key}.probe-{self.token}"
        self._put(key=probe, body=b"probe")
        try:
            if self._put(key=probe, body=b"probe", IfNoneMatch="*") is not None:
                raise StorageError(
                    f"s3://{self.bucket}: the object store ignores conditional writes (If-None-Match), so the "
                    "driver lock cannot keep a second driver out; use S3, MinIO or another store that honours "
                    "them, or a shared filesystem for spec.storage.path")
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=probe)

    def _create(self) -> bool:
        return self._claim(IfNoneMatch="*")

    def _read(self) -> tuple[dict, str] | None:
        from botocore.exceptions import ClientError

        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return checked(r["Body"].read(), r["LastModified"].timestamp()), r["ETag"]

    def holder(self) -> dict | None:
        found = self._read()
        if found is None:
            return None
        h, etag = found
        return {**h, "_etag": etag}

    def _take_over(self, h: dict) -> bool:
        return self._claim(IfMatch=h["_etag"])

    def beat(self) -> bool:
        if self.etag is None:
            return False
        etag = self._put(IfMatch=self.etag)
        if etag is not None:
            self.etag = etag
        return etag is not None

    def release(self) -> None:
        from botocore.exceptions import ClientError

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 1)
        if self.etag is None:
            return
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except ClientError:
            pass  # taken over meanwhile: the lock is somebody else's now


def lock_for(root, heartbeat_s: float = 5.0, stale_s: float | None = None) -> DriverLock:
    """The experiment directory's driver lock, on a filesystem or on S3."""
    url = str(root)
    if url.startswith("s3://"):
        return ObjectLock(url, heartbeat_s, stale_s)
    if "://" in url:
        raise StorageError(f"{url}: the driver lock needs a filesystem or S3 (conditional writes)")
    return DriverLock(Path(url), heartbeat_s, stale_s)
