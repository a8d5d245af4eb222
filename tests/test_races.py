"""Races on the result tree, done for real: processes released at the same instant contend for
a node's lock, fork two branches with one name, or fork a parent whose retention deletes
checkpoints while it trains."""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import rows

from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.core.checkpoint import load_checkpoint
from rumpy.training.setup import prepare, start
from rumpy.tree.lock import NodeLock, NodeLockedError, check_unlocked, lock_holder
from rumpy.tree.node import Node

CONTENDERS = 8
FRESH_ROUNDS = 300
STALE_ROUNDS = 100
# fork: the contenders are copies of this process, ready at once (no interpreter start-up)
FORK = multiprocessing.get_context("fork")


# -- 1. one writer per node ----------------------------------------------------------------------
def _contend(folders, start_gate, tried_gate, wins, errors):
    """One contender: in every round, take the lock of that round's folder the moment the gate
    opens, and hold it until every contender has tried."""
    for i, folder in enumerate(folders):
        start_gate.wait()
        lock = NodeLock(folder)
        try:
            lock.acquire()
        except NodeLockedError:
            lock = None
        except Exception:  # anything but a clean refusal is a failure of the round
            lock = None
            with errors.get_lock():
                errors[i] += 1
        tried_gate.wait()
        if lock is not None:
            with wins.get_lock():
                wins[i] += 1
            lock.release()


def _hold(folder, ready):
    NodeLock(folder).acquire()
    ready.set()
    time.sleep(60)


def _leave_stale_lock(folder: Path) -> None:
    """A real process takes the lock and is killed with SIGKILL while holding it."""
    ready = FORK.Event()
    holder = FORK.Process(target=_hold, args=(folder, ready))
    holder.start()
    assert ready.wait(30)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    assert json.loads((folder / ".lock").read_text())["pid"] == holder.pid  # left behind


def _race(folders: list[Path], stale: bool) -> tuple[list[int], list[int]]:
    """Rounds of CONTENDERS processes released by a barrier onto the lock of one folder each.
    Returns the wins and errors per round."""
    start_gate = FORK.Barrier(CONTENDERS + 1, timeout=60)
    tried_gate = FORK.Barrier(CONTENDERS + 1, timeout=60)
    wins, errors = FORK.Array("i", len(folders)), FORK.Array("i", len(folders))
    workers = [FORK.Process(target=_contend, args=(folders, start_gate, tried_gate, wins, errors))
               for _ in range(CONTENDERS)]
    for worker in workers:
        worker.start()
    try:
        for folder in folders:
            if stale:
                _leave_stale_lock(folder)
            start_gate.wait()
            tried_gate.wait()
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.exitcode is None:
                worker.kill()
    return list(wins), list(errors)


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_exactly_one_of_many_simultaneous_writers_gets_the_lock(tmp_path, stale):
    rounds = STALE_ROUNDS if stale else FRESH_ROUNDS
    folders = [tmp_path / f"node_{i}" for i in range(rounds)]
    for folder in folders:
        folder.mkdir()
    began = time.perf_counter()
    wins, errors = _race(folders, stale)
    elapsed = time.perf_counter() - began
    bad = {i: w for i, w in enumerate(wins) if w != 1}
    assert not bad and not any(errors), (f"rounds with != 1 winner: {bad}; rounds with errors: "
                                         f"{[i for i, e in enumerate(errors) if e]}")
    assert not any((f / ".lock").exists() for f in folders)  # the winners removed theirs
    print(f"{rounds} rounds of {CONTENDERS} contenders ({'stale' if stale else 'fresh'} lock): "
          f"one winner each, {elapsed:.1f}s")


def test_lock_holder_garbage_and_own_process(tmp_path):
    node = tmp_path / "node"
    node.mkdir()
    lock_file = node / ".lock"
    for garbage in (b"", b"\xff\xfe\x00garbage", b"[1, 2]", b'{"pid": "x\\ny"}', b"{"):
        lock_file.write_bytes(garbage)
        assert lock_holder(node) is None  # a file nobody holds is no lock, whatever it says
        check_unlocked(node)
        lock = NodeLock(node)
        lock.acquire()
        assert lock_holder(node) is None  # this process is the writer: not locked out
        check_unlocked(node)
        with pytest.raises(NodeLockedError):  # but a second writer in it is refused
            NodeLock(node).acquire()
        lock.release()
        assert not lock_file.exists()
    # held by another process whose lock file holds garbage: a one-line refusal, no traceback
    ready = FORK.Event()
    holder = FORK.Process(target=_hold, args=(node, ready))
    holder.start()
    try:
        assert ready.wait(30)
        assert lock_holder(node)["pid"] == holder.pid
        lock_file.write_bytes(b'{"pid": "x\\ny", "since": ')
        with pytest.raises(NodeLockedError) as info:
            check_unlocked(node)
        assert str(info.value) == (f"{node} is being trained by another process; wait for it to "
                                   f"finish or stop it first")
        with pytest.raises(NodeLockedError):
            NodeLock(node).acquire()
    finally:
        holder.kill()
        holder.join()
    lock = NodeLock(node)  # its process is gone: the lock is free, however the file looks
    lock.acquire()
    lock.release()
    lock_file.mkdir()  # not even a file: refused with a message, no traceback
    assert lock_holder(node) is None
    with pytest.raises(NodeLockedError, match="cannot be used as a lock file"):
        NodeLock(node).acquire()


def _hold_with_child(folder, ready, child_pid):
    NodeLock(folder).acquire()
    child = FORK.Process(target=time.sleep, args=(60,))  # like a DataLoader worker: forked
    child.start()
    child_pid.value = child.pid
    ready.set()
    time.sleep(60)


def test_a_forked_child_of_a_killed_writer_does_not_keep_the_lock(tmp_path):
    ready, child_pid = FORK.Event(), FORK.Value("i", 0)
    holder = FORK.Process(target=_hold_with_child, args=(tmp_path, ready, child_pid))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(NodeLockedError):
            NodeLock(tmp_path).acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
        os.kill(child_pid.value, 0)  # the child still runs, with the lock file open no more
        lock = NodeLock(tmp_path)
        lock.acquire()
        lock.release()
    finally:
        holder.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid.value, signal.SIGKILL)


# -- 2. two forks with one name ------------------------------------------------------------------
# Imports (the slow part of starting) done, each process waits for the go file, then runs the CLI.
CLI_AT_GO = ("import sys, time, pathlib\n"
             "from rumpy.cli.train import main\n"
             "import rumpy.training.trainer\n"
             "go = pathlib.Path(sys.argv[1])\n"
             "print('ready', flush=True)\n"
             "while not go.exists():\n"
             "    time.sleep(0.001)\n"
             "sys.exit(main(sys.argv[2:]))\n")


def _clis_at_go(go: Path, count: int, *args: str) -> list[subprocess.Popen]:
    """`count` CLI processes started together, each ready to run with `args` once `go` exists."""
    procs = [subprocess.Popen([sys.executable, "-c", CLI_AT_GO, str(go), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(count)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    return procs


def _hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def test_two_forks_with_one_name_at_once(write_config, tmp_path):
    path = write_config(num_epochs=2, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path), "--num_epochs", "1"]) == 0
    parent = tmp_path / "Results" / "tiny"
    at_rename = 0  # rounds where both passed the plan's check and met at the rename
    for round_ in range(3):
        name = f"same_{round_}"
        go = tmp_path / f"go_{round_}"
        procs = _clis_at_go(go, 2, "--parameters", str(path), "--continue_from_epoch", "1",
                            "--new_branch", "--new_branch_name", name)
        go.touch()
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert codes == [0, 2], outputs
        loser = outputs[[p.returncode for p in procs].index(2)]
        errors = [line for line in loser.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "Traceback" not in loser, loser  # one line says why
        assert errors[0].endswith(f"{parent / name} already exists; choose another name")
        at_rename += "tiles: 8 image pairs" in loser  # it got past planning into data set-up
        assert [n.name for n in Node(parent, "").children()] == \
            [f"same_{r}" for r in range(round_ + 1)]
        assert _hidden(parent) == [], _hidden(parent)  # no temp folder, no lock file left
        assert json.loads((parent / name / "status.json").read_text())["state"] == "finished"
    print(f"3 rounds of two forks named alike: one branch each, {at_rename} met at the rename")


def test_interrupted_fork_leaves_nothing_behind(write_config, tmp_path, monkeypatch):
    path = write_config(num_epochs=2)
    assert train_main(["--parameters", str(path), "--num_epochs", "1"]) == 0
    parent = tmp_path / "Results" / "tiny"
    run = prepare(load_config(path, {"continue_from_epoch": 1, "new_branch": True}))

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("rumpy.tree.apply.write_json", ctrl_c)  # mid-way through the branch
    with pytest.raises(KeyboardInterrupt):
        start(run)
    assert Node(parent, "").children() == [] and _hidden(parent) == []


# -- 3. a fork against the parent's retention ----------------------------------------------------
def test_fork_while_parent_prunes_keeps_the_fork_checkpoint(write_config, tmp_path):
    """The parent keeps only its best and last checkpoints (keep_every_n_epochs = 0) and takes
    ~0.5 s an epoch. Meanwhile this process forks each newest epoch as the CLI does: prepare
    (which plans, reading the fork checkpoint), a pause standing for the rest of prepare on a
    real data set (decoding, caching, building the model), then start (which makes the branch).
    The parent often saves its next epoch and prunes the fork epoch during the pause: every
    branch that gets made must still find its fork checkpoint intact."""
    text = write_config(num_epochs=10, extra_training='logging = "text"\nkeep_every_n_epochs = 0'
                        ).read_text()
    path = write_config(name="slow.toml", text=text.replace("crop = 12", "crop = 12\nrepeat = 50"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # steady epoch times on a busy machine
    parent_proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters",
                                    str(path)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, env=env)
    prepare(load_config(path, {"experiment_name": "warm_up"}))  # first-call costs, not in a race
    parent = Node(tmp_path / "Results" / "tiny", "")
    rng = random.Random(0)
    forked: set[int] = set()
    made, refused = [], []
    try:
        while parent_proc.poll() is None:
            newest = max(parent.own_checkpoints(), default=None) if parent.exists() else None
            if newest is None or newest in forked:
                time.sleep(0.01)
                continue
            forked.add(newest)
            rows = parent.summary()  # (written just after the checkpoint)
            epoch_time = float(rows[-1]["epoch-time"]) if rows else 0.5
            cfg = load_config(path, {"continue_from_epoch": newest, "new_branch": True,
                                     "new_branch_name": f"fork_{newest}", "num_epochs": 100})
            try:
                run = prepare(cfg)
                time.sleep(rng.uniform(0, 1.0) * epoch_time)
                start(run)
            except ConfigError as exc:  # refused cleanly: the checkpoint went first
                refused.append(str(exc))
                continue
            run.lock.release()
            made.append(newest)
    finally:
        output = parent_proc.communicate(timeout=120)[0]
    assert parent_proc.returncode == 0, output
    assert sorted(b.fork_epoch for b in parent.children()) == made and len(made) >= 2, refused
    for branch in parent.children():
        ckpt = branch.checkpoint_for(branch.fork_epoch)
        assert ckpt is not None, f"{branch.name}: the fork checkpoint is gone"
        load_checkpoint(ckpt)  # verifies its SHA-256
        assert branch.lineage["fork_checkpoint_sha256"] == \
            ckpt.with_name(ckpt.name + ".sha256").read_text().split()[0]
    assert all(("no checkpoint of epoch" in m or "cannot read" in m or
                "was removed or replaced" in m) for m in refused), refused
    assert _hidden(parent.path) == []
    print(f"forks at epochs {sorted(made)} made, {len(refused)} refused: the checkpoint went first")


def test_a_run_made_meanwhile_is_not_blamed_on_the_replacing_user(write_config, tmp_path):
    """The loser of that race gave --overwrite_data already: its one line says another process
    made the run after it started, instead of asking for --overwrite_data."""
    from rumpy.core.run_folder import RunExistsError, RunFolder
    cfg = load_config(write_config(), {"overwrite_data": True})
    root = tmp_path / "Results" / "tiny"
    (root / "saved_models").mkdir(parents=True)  # what the other process made meanwhile
    with pytest.raises(RunExistsError) as info:
        RunFolder(root).create(cfg)
    assert "made by another process after this one started" in str(info.value)
    assert "--overwrite_data," not in str(info.value)
    assert sorted(p.name for p in root.rglob("*")) == ["saved_models"]


def test_two_overwrite_data_runs_at_once_never_share_a_folder(write_config, tmp_path):
    """Both plan to replace the same run; the start-up lock makes the second find the first's
    new run locked (one line, exit 2) instead of setting it aside and training into it too."""
    path = write_config(num_epochs=2, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path), "--num_epochs", "1"]) == 0
    results = tmp_path / "Results"
    for round_ in range(3):
        go = tmp_path / f"go_overwrite_{round_}"
        procs = _clis_at_go(go, 2, "--parameters", str(path), "--overwrite_data")
        go.touch()
        outputs = [p.communicate(timeout=180)[0] for p in procs]
        codes = [p.returncode for p in procs]
        assert sorted(codes) in ([0, 0], [0, 2]), outputs
        if sorted(codes) == [0, 2]:
            loser = outputs[codes.index(2)]
            # the first's new run is locked ("being trained by"), or, when the second looked
            # in the instant between the old run set aside and the new one made, the new one
            # already exists by the time it creates its own: refused either way, one line
            assert "Traceback" not in loser and ("being trained by" in loser or
                                                 "made by another process after this one "
                                                 "started" in loser), loser
        node = results / "tiny"
        assert [r["epoch"] for r in rows(node)] == ["1", "2"]  # one run's rows, not two mixed
        assert not [p for p in results.iterdir() if p.name.startswith(".tiny.")], \
            list(results.iterdir())
