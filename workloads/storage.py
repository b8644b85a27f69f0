"""Experiment storage: a local (or shared, mounted) directory, or an S3-compatible object store (``s3://``).

Everything vlmscale keeps — the ledger, progress files, checkpoints, the pretrained vision tower,
the report — goes through the few operations here, so one code path serves a ReadWriteMany volume
and a bucket. ``path_of`` gives a ``pathlib.Path`` for local storage and a ``upath.UPath``
(fsspec: s3fs) for an object store; both have the same ``/``, ``read_text``, ``iterdir``,
``glob``, ``exists`` and ``stat``.

Atomicity differs, so writes go through here:
* local: temp file in the same directory, fsync, rename — a reader sees the old or the new file;
* object store: one PUT — an object appears whole or not at all (S3 is strongly consistent for
  reads after writes and for listings). A directory (a checkpoint) is many
  objects: it is uploaded file by file with each rank's seal last (workloads/checkpoint.py), so
  a cut upload is detected and skipped on resume.
There is no append on an object store: ``append_line`` rewrites the object (progress files are a
few hundred short lines; each cell has one writer).

Credentials come only from the environment (AWS_ACCESS_KEY_ID/…, AWS_ENDPOINT_URL for an
S3-compatible server) — on Kubernetes, a Secret the pods load.
No torch, no ray: the orchestrator's light commands import this.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

REMOTE_SCHEMES = ("s3://",)
CACHE_ENV = "VLMSCALE_CACHE"


def is_remote(path: Any) -> bool:
    return str(path).startswith(REMOTE_SCHEMES)


def path_of(path: Any):
    """A path object for ``path``: ``Path`` for local storage, ``UPath`` for ``s3://``."""
    if isinstance(path, Path) or not is_remote(path):
        return path if isinstance(path, Path) else Path(str(path)).expanduser()
    if not isinstance(path, str):
        return path  # already a UPath
    try:
        from upath import UPath
    except ImportError:
        raise RuntimeError(f"{path}: object storage needs vlmscale's s3 extra "
                           "(pip install 'vlmscale[s3]': s3fs, universal_pathlib)") from None
    # no listings cache: other processes (trials, a second driver) write the same prefix
    options: dict[str, Any] = {"use_listings_cache": False}
    if path.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        # explicit, so fsspec's cached filesystem follows the environment (an S3-compatible server)
        options["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    return UPath(path, **options)


def cache_dir() -> Path:
    """Local scratch for object-store data that must be a file (MLflow's sqlite, a model to load)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vlmscale").expanduser()


def local_mirror(path: Any) -> Path:
    """A stable local directory standing for the remote ``path`` (the same on every call)."""
    url = str(path).rstrip("/")
    scheme, rest = url.split("://", 1)
    return cache_dir() / scheme / rest


# ------------------------------------------------------------------------------------------------
# writes


def write_bytes_atomic(path: Any, data: bytes) -> None:
    if is_remote(path):
        path_of(path).write_bytes(data)  # one PUT: whole or absent
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Any, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def append_line(path: Any, line: str) -> None:
    """Append one line (``line`` without its newline)."""
    if is_remote(path):
        p = path_of(path)
        try:
            old = p.read_bytes()
        except FileNotFoundError:
            old = b""
        p.write_bytes(old + line.encode() + b"\n")
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(line + "\n")


def remove_tree(path: Any) -> None:
    p = path_of(path)
    if is_remote(path):
        fs = p.fs
        if fs.exists(p.path):
            fs.rm(p.path, recursive=True)
    else:
        shutil.rmtree(p, ignore_errors=True)


def move(src: Any, dst: Any) -> bool:
    """Move a file or directory tree to ``dst`` (its parents made); False if ``src`` is absent."""
    s, d = path_of(src), path_of(dst)
    if is_remote(src):
        if not s.fs.exists(s.path):
            return False
        s.fs.mv(s.path, d.path, recursive=True)
        return True
    if not s.exists():
        return False
    d.parent.mkdir(parents=True, exist_ok=True)
    os.replace(s, d)
    return True


def publish_dir(local: Path, dest: Any, last: tuple[str, ...] = ()) -> None:
    """Put the local directory ``local`` at ``dest``, replacing what was there.

    Local: ``local`` must be on the same filesystem (a staging directory beside ``dest``); it is
    renamed into place — all or nothing. Remote: files are uploaded one by one, the names in
    ``last`` (seals, a metadata file readers look for) after all others, so a reader that finds
    them finds everything; ``local`` is left for the caller to delete.
    """
    if not is_remote(dest):
        dest = Path(dest)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(local, dest)
        return
    remove_tree(dest)
    files = sorted(p for p in Path(local).rglob("*") if p.is_file())
    ordered = [p for p in files if p.name not in last] + [p for p in files if p.name in last]
    base = path_of(dest)
    for p in ordered:
        (base / str(p.relative_to(local))).write_bytes(p.read_bytes())


def download_dir(src: Any, local: Path, files: list[str] | None = None) -> Path:
    """Copy the remote directory ``src`` (or just ``files``, paths under it as its
    filesystem names them) into the local directory ``local`` (created)."""
    p = path_of(src)
    local.mkdir(parents=True, exist_ok=True)
    root = p.path.rstrip("/")
    for f in files if files is not None else p.fs.find(root):
        rel = f[len(root):].lstrip("/")
        target = local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(p.fs.cat_file(f))
    return local


def localize(path: str) -> str:
    """``path`` as something ``from_pretrained`` can open: local paths and hub names unchanged,
    a remote directory downloaded once into the cache (keyed by its URL and its files' sizes and
    modification times, so a re-uploaded directory is fetched again)."""
    if not is_remote(path):
        return path
    p = path_of(path)
    listing = sorted((f, str(i.get("size")), str(i.get("LastModified") or i.get("mtime") or i.get("updated")))
                     for f, i in p.fs.find(p.path.rstrip("/"), detail=True).items())
    if not listing:
        raise FileNotFoundError(f"{path}: nothing stored there")
    version = hashlib.sha256(repr(listing).encode()).hexdigest()[:16]
    mirror = local_mirror(path)
    target = mirror.with_name(f"{mirror.name}-{version}")
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch_", dir=target.parent))
        download_dir(path, staging, [f for f, _, _ in listing])
        try:
            os.replace(staging, target)
        except OSError:  # another process fetched it first
            shutil.rmtree(staging, ignore_errors=True)
    return str(target)
