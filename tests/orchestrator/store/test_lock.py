"""One driver per experiment: the lock file, its heartbeat, take-over of a dead holder's lock, and
a race of many processes for one lock (exactly one wins)."""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import subprocess
import sys
import time

import pytest

from orchestrator.store.lock import LOCK_FILE, DriverLock, LockHeld


def test_a_second_driver_is_refused_with_the_holders_name(tmp_path):
    first = DriverLock(tmp_path, heartbeat_s=0.1).acquire("experiment q")
    try:
        with pytest.raises(LockHeld) as e:
            DriverLock(tmp_path).acquire("experiment q")
        msg = str(e.value)
        assert "experiment q is being run by another driver" in msg
        assert f"host {socket.gethostname()}, pid {first.pid}" in msg and "last heartbeat" in msg
        beat = json.loads((tmp_path / LOCK_FILE).read_text())["heartbeat"]
        time.sleep(0.35)
        assert json.loads((tmp_path / LOCK_FILE).read_text())["heartbeat"] > beat  # the heartbeat ticks
    finally:
        first.release()
    assert not (tmp_path / LOCK_FILE).exists()
    DriverLock(tmp_path).acquire().release()  # free again


def _write_holder(path, **fields):
    record = {"host": socket.gethostname(), "pid": 1, "since": time.time(), "heartbeat": time.time(), "token": "x"}
    record.update(fields)
    (path / LOCK_FILE).write_text(json.dumps(record))


def test_a_stale_heartbeat_is_taken_over(tmp_path):
    _write_holder(tmp_path, host="another-pod", pid=7, heartbeat=time.time() - 100)
    lock = DriverLock(tmp_path, stale_s=45).acquire()
    assert lock.owned() and not list(tmp_path.glob(f"{LOCK_FILE}.stale-*"))
    lock.release()
    _write_holder(tmp_path, host="another-pod", pid=7, heartbeat=time.time() - 10)  # fresh: alive elsewhere
    with pytest.raises(LockHeld, match="host another-pod, pid 7"):
        DriverLock(tmp_path, stale_s=45).acquire()


@pytest.mark.parametrize("content", [b"", b'{"host": "a", "pi', b"[]", b'{"host": 1, "pid": "x"}', b"\xff\xfe"])
def test_an_empty_or_unreadable_lock_is_stale_once_it_is_not_being_written(tmp_path, content):
    import os

    (tmp_path / LOCK_FILE).write_bytes(content)
    old = time.time() - 5
    os.utime(tmp_path / LOCK_FILE, (old, old))
    lock = DriverLock(tmp_path, stale_s=3600).acquire()  # a driver killed mid-write, a full disk: no one's
    assert lock.owned()
    lock.release()


def test_a_lock_caught_mid_write_is_read_again_and_its_holder_named(tmp_path):
    import threading

    (tmp_path / LOCK_FILE).write_bytes(b"")  # a writer without hard links, between create and write
    finish = threading.Timer(0.3, _write_holder, args=(tmp_path,), kwargs={"host": "another-pod", "pid": 7})
    finish.start()
    try:
        with pytest.raises(LockHeld, match="host another-pod, pid 7,"):
            DriverLock(tmp_path, stale_s=3600).acquire()
    finally:
        finish.join()
    (tmp_path / LOCK_FILE).write_bytes(b"")  # one that stays unreadable past the grace is no one's
    t0 = time.monotonic()
    lock = DriverLock(tmp_path, stale_s=3600).acquire()
    assert lock.owned() and time.monotonic() - t0 < 10
    lock.release()


def test_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write_holder(tmp_path, pid=gone.pid)  # fresh heartbeat, but its process is gone (a SIGKILLed driver)
    lock = DriverLock(tmp_path, stale_s=3600).acquire()
    assert lock.owned()
    lock.release()


def test_a_lock_taken_over_is_never_resurrected_by_the_old_holder(tmp_path):
    old = DriverLock(tmp_path, heartbeat_s=3600).acquire()
    _write_holder(tmp_path, host="another-pod", pid=7, token="new")  # someone took it (old looked dead)
    assert not old.beat() and json.loads((tmp_path / LOCK_FILE).read_text())["token"] == "new"
    old.release()  # releases only what it owns
    assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] == "new"


def _contender(directory, start, results):
    start.wait()
    try:
        lock = DriverLock(directory, heartbeat_s=3600).acquire()
        results.put(("won", lock.pid))
        time.sleep(1.0)  # hold it while the others try
        lock.release()
    except LockHeld as e:
        results.put(("refused", str(e)))


@pytest.mark.parametrize("stale", [False, True])
def test_of_many_drivers_started_at_once_exactly_one_wins(tmp_path, stale):
    if stale:  # all of them find a dead holder's lock and race to take it over
        _write_holder(tmp_path, host="another-pod", pid=7, heartbeat=time.time() - 1000)
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(tmp_path, start, results)) for _ in range(6)]
    for p in procs:
        p.start()
    time.sleep(1.5)  # let every process import and wait at the start line
    start.set()
    for p in procs:
        p.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert [o for o, _ in outcomes] == ["refused"] * 5 + ["won"], outcomes
    winner = outcomes[-1][1]
    for _, refusal in outcomes[:-1]:  # each loser names the winner, never a lock caught mid-write
        assert f"host {socket.gethostname()}, pid {winner}," in refusal, refusal


def test_a_link_made_but_answered_exists_is_ours(tmp_path, monkeypatch):
    """NFS retransmits a link whose reply was lost, and the retry answers EEXIST: the lock is ours
    if our private file has two names."""
    import os

    link = os.link

    def link_then_lost_reply(src, dst):
        link(src, dst)
        raise FileExistsError(dst)

    monkeypatch.setattr(os, "link", link_then_lost_reply)
    lock = DriverLock(tmp_path, heartbeat_s=3600).acquire()
    assert lock.owned()
    monkeypatch.setattr(os, "link", link)
    with pytest.raises(LockHeld, match=f"pid {lock.pid},"):
        DriverLock(tmp_path).acquire()
    lock.release()
    assert not list(tmp_path.iterdir())  # no private file left behind
