"""Object storage (storage.path: s3://bucket/prefix) against a real S3-compatible server (moto's
standalone server, started here): atomic writes, the ledger, checkpoints and resume, the vision
tower's download, and the driver lock with conditional writes."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.errors import StorageError
from orchestrator.protocols import LedgerRecord
from orchestrator.store.layout import ExperimentDir
from orchestrator.store.lock import LOCK_FILE, LockHeld, ObjectLock, lock_for
from tests.support.s3_server import S3Server
from workloads import storage
from workloads.config import CellConfig, DataConfig, FaultConfig, ModelConfig, TrainConfig
from workloads.drill import InjectedFault
from workloads.train import train_local


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with S3Server(tmp_path_factory.mktemp("moto")) as s:
        yield s


def _use(server, monkeypatch, tmp_path) -> S3Server:
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    return server


@pytest.fixture
def s3(server, monkeypatch, tmp_path):
    return _use(server, monkeypatch, tmp_path)


def _prefix(s3) -> str:
    return s3.url(f"t-{uuid.uuid4().hex[:8]}")


def _keys(url: str) -> list[str]:
    p = storage.path_of(url)
    return sorted(f[len(p.path):].lstrip("/") for f in p.fs.find(p.path))


def test_writes_appends_and_directories_round_trip(s3, tmp_path):
    root = _prefix(s3)
    storage.write_text_atomic(f"{root}/a/b.json", '{"x": 1}')
    assert storage.path_of(f"{root}/a/b.json").read_text() == '{"x": 1}'
    storage.append_line(f"{root}/p.jsonl", "one")
    storage.append_line(f"{root}/p.jsonl", "two")
    assert storage.path_of(f"{root}/p.jsonl").read_text() == "one\ntwo\n"

    local = tmp_path / "d"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "w.bin").write_bytes(b"\1" * 1000)
    (local / "seal.json").write_text("{}")
    storage.publish_dir(local, f"{root}/dir", last=("seal.json",))
    storage.publish_dir(local, f"{root}/dir", last=("seal.json",))  # replaces, never merges with the old
    assert _keys(f"{root}/dir") == ["seal.json", "sub/w.bin"]
    back = storage.download_dir(f"{root}/dir", tmp_path / "back")
    assert (back / "sub" / "w.bin").read_bytes() == b"\1" * 1000


def test_a_remote_model_directory_is_fetched_once_and_again_after_it_changes(s3, tmp_path):
    root = _prefix(s3)
    storage.write_text_atomic(f"{root}/m/config.json", "{}")
    first = storage.localize(f"{root}/m")
    assert storage.localize(f"{root}/m") == first and (tmp_path / "cache") in Path(first).parents
    storage.write_text_atomic(f"{root}/m/config.json", '{"changed": true}')
    second = storage.localize(f"{root}/m")
    assert second != first and json.loads(open(f"{second}/config.json").read()) == {"changed": True}
    assert storage.localize("tiny-s") == "tiny-s"  # presets and hub names pass through
    with pytest.raises(FileNotFoundError, match="nothing stored"):
        storage.localize(f"{root}/absent")


def test_the_ledger_and_progress_files_live_in_the_bucket(s3):
    exp_dir = ExperimentDir.of(_prefix(s3), "exp")
    assert exp_dir.remote and exp_dir.finished() == {} and exp_dir.finished_record("c1") is None
    for key in ("c1", "c2"):
        exp_dir.record_finished(LedgerRecord.from_dict({"key": key, "config_digest": "0" * 16,
                                      "metrics": {"error": 0.5, "llm_params": 1e6}}, key))
    storage.append_line(exp_dir.progress_path("c1"), json.dumps({"step": 5}))
    storage.append_line(exp_dir.progress_path("c1"), "{cut by a kill")
    assert sorted(exp_dir.finished()) == ["c1", "c2"]
    assert exp_dir.finished_record("c2").metrics["error"] == 0.5
    assert exp_dir.progress_history("c1") == [{"step": 5}]
    # the default MLflow store must be a local file: it lives in the cache, named after the bucket path
    assert exp_dir.mlflow_uri.startswith("sqlite:///") and "/cache/s3/" in exp_dir.mlflow_uri
    assert ExperimentDir.at(str(exp_dir.root)).root == exp_dir.root


def _cell(fault=None, **train):
    return CellConfig(
        model=ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="avgpool", visual_tokens=4, freeze_vision=False),
        data=DataConfig(tasks=("shapes",), train_size=300, eval_size=16),
        train=TrainConfig(**{"steps": 12, "batch_size": 8, "checkpoint_every": 4, "log_every": 2, "lr": 3e-3,
                             **train}),
        fault=fault,
    )


def test_a_cell_checkpointing_to_s3_resumes_bit_exact(s3, tmp_path):
    ref, _ = train_local(_cell(), tmp_path / "ref")
    root = _prefix(s3) + "/cells/c"
    crashing = _cell(fault=FaultConfig(10))
    with pytest.raises(InjectedFault):
        train_local(crashing, root)
    assert [k for k in _keys(root) if k.endswith("state.json")] == ["checkpoint_00000004/state.json",
                                                                    "checkpoint_00000008/state.json"]
    metrics, session = train_local(crashing, root)
    assert metrics["resumed_from_step"] == 8
    for key in ("error", "eval_loss", "loss"):
        assert metrics[key] == ref[key], key
    assert [p.name for p in session.checkpoints()] == ["checkpoint_00000008", "checkpoint_00000012"]


def test_an_upload_cut_short_falls_back_to_the_previous_checkpoint(s3, tmp_path):
    root = _prefix(s3) + "/cells/c"
    with pytest.raises(InjectedFault):
        train_local(_cell(fault=FaultConfig(10)), root)
    # the step-8 upload lost its largest file (a node died mid-upload): its seal names it
    newest = storage.path_of(root) / "checkpoint_00000008"
    victim = max((f for f in newest.rglob("*.pt")), key=lambda f: f.stat().st_size)
    victim.unlink()
    metrics, _ = train_local(_cell(fault=FaultConfig(10)), root)
    assert metrics["resumed_from_step"] == 4
    ref, _ = train_local(_cell(), tmp_path / "ref")
    assert metrics["error"] == ref["error"]


def test_a_second_driver_on_s3_is_refused_and_a_stale_lock_taken_over(s3):
    root = _prefix(s3) + "/exp"
    first = lock_for(root, heartbeat_s=0.2).acquire("experiment exp")
    assert isinstance(first, ObjectLock)
    with pytest.raises(LockHeld, match=r"being run by another driver: host .*, pid \d+"):
        lock_for(root).acquire("experiment exp")
    time.sleep(0.6)  # several heartbeats: the lock object's ETag moved on, still ours
    assert first.owned()
    first.release()
    assert not storage.path_of(f"{root}/{LOCK_FILE}").exists()

    dead = lock_for(root, heartbeat_s=3600).acquire()
    dead._stop.set()  # a driver that vanished: no heartbeat, lock left behind
    later = lock_for(root, stale_s=0.5)
    time.sleep(1.0)
    later.acquire()
    assert later.owned() and not dead.owned()
    assert not dead.beat()  # the old holder never writes over the new owner
    dead.release()
    assert later.owned()
    later.release()


def _contender(root, env, starts, dones, results):
    import os

    os.environ.update(env)
    for r, (start, done) in enumerate(zip(starts, dones)):
        start.wait()
        try:
            lock = lock_for(f"{root}-{r}", heartbeat_s=3600).acquire()
            results.put((r, "won"))
            done.wait(120)  # held until every contender has tried, however late a busy machine starts it
            lock.release()
        except LockHeld:
            results.put((r, "refused"))


def _races(s3, stale: list[bool], contenders: int = 6) -> list[list[str]]:
    """Rounds of ``contenders`` processes racing for one lock each (a fresh experiment per round;
    ``stale[r]``: every contender finds a dead driver's lock and races to take it over). The
    processes start once and race every round, all released at one instant."""
    root = _prefix(s3) + "/exp"
    ctx = mp.get_context("spawn")
    starts, dones, results = [ctx.Event() for _ in stale], [ctx.Event() for _ in stale], ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(root, s3.env, starts, dones, results)) for _ in range(contenders)]
    for p in procs:
        p.start()
    time.sleep(2.0)
    outcomes = []
    for r, old in enumerate(stale):
        if old:
            storage.write_text_atomic(f"{root}-{r}/{LOCK_FILE}", json.dumps(
                {"host": "another-pod", "pid": 7, "since": 0, "heartbeat": time.time() - 1000, "token": "old"}))
        starts[r].set()
        got = [results.get(timeout=120) for _ in procs]
        assert {i for i, _ in got} == {r}
        outcomes.append(sorted(o for _, o in got))
        dones[r].set()
    for p in procs:
        p.join(60)
    return outcomes


@pytest.mark.parametrize("stale", [False, True])
def test_of_many_drivers_racing_on_s3_exactly_one_wins(s3, stale):
    assert _races(s3, [stale]) == [["refused"] * 5 + ["won"]]


def _burn(stop):
    while not stop.is_set():
        pass


@pytest.fixture
def racy_s3(tmp_path, monkeypatch):
    with S3Server(tmp_path / "moto", write_delay=0.2) as s:
        yield _use(s, monkeypatch, tmp_path)


@pytest.mark.chaos
def test_the_race_holds_twenty_times_on_a_busy_machine(racy_s3):
    """A store whose conditional writes are not atomic (moto's are not: it checks, then writes,
    without a lock; here 0.2 s apart): every contender's create is accepted, so an accepted write
    is only a claim. With the settle and read-back exactly one holds the lock, twenty times over
    beside two busy processes; without them all six "win" (checked)."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    burners = [ctx.Process(target=_burn, args=(stop,), daemon=True) for _ in range(2)]
    for b in burners:
        b.start()
    try:
        outcomes = _races(racy_s3, [run % 2 == 1 for run in range(20)])
    finally:
        stop.set()
        for b in burners:
            b.join(10)
    assert outcomes == [["refused"] * 5 + ["won"]] * 20


def test_storage_that_cannot_be_written_is_refused_before_anything_starts(s3):
    with pytest.raises(StorageError, match=r"storage s3://no-such-bucket-here/p cannot be written .*bucket exists"):
        ExperimentDir.of("s3://no-such-bucket-here/p", "exp").check_writable()
    ExperimentDir.of(_prefix(s3), "exp").check_writable()  # a bucket that exists: fine, and nothing left behind


def test_object_lock_needs_s3():
    with pytest.raises(StorageError, match="conditional writes"):
        lock_for("gs://bucket/exp")


def test_a_store_that_ignores_conditional_writes_is_refused(s3):
    """A store that accepts If-None-Match: * over an existing object (here: the header stripped on
    its way to the real server) could let two drivers run: refused before the lock is claimed."""
    root = _prefix(s3) + "/exp"
    lock = ObjectLock(root)
    lock.client.meta.events.register("before-parameter-build.s3.PutObject",
                                     lambda params, **_: params.pop("IfNoneMatch", None))
    with pytest.raises(StorageError, match=r"s3://vlmscale-test: the object store ignores conditional writes"):
        lock.acquire("experiment exp")
    assert not storage.path_of(root).exists() or _keys(root) == []  # no lock, no probe left behind
