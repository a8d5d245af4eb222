"""A search's Optuna study, kept in `<sweep>/optuna.journal` (Optuna's JournalStorage with its
file backend: an append-only log that any number of processes on a shared file system read and
write), and the claim on a trial.

A worker claims a trial by holding the lock of `<sweep>/.trials/<number>/` (a kernel lock,
dropped when its process dies however it dies) while it trains the trial's seeds. A trial that
Optuna still calls running but whose lock is free was being trained by a process that died: the
next worker retries it, into the same nodes. Asking for a new trial and looking for such orphans
happen under the sweep's lock, so two workers never take one trial, and the study never gets more
than n_trials (promoted trials are extra)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..tree.lock import NodeLock, NodeLockedError, file_lock
from .spec import Sweep

log = logging.getLogger(__name__)

JOURNAL = "optuna.journal"
PROMOTED = "promoted_from"      # a promoted trial's user attribute: the trial it continues
NUM_EPOCHS = "num_epochs"       # a promoted trial's user attribute: its epochs


def storage(folder: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(folder / JOURNAL)))


def open_study(sweep: Sweep):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # rumpy logs each trial itself
    spec = sweep.search
    with file_lock(sweep.folder / ".sweep.lock"):
        return optuna.create_study(
            storage=storage(sweep.folder), study_name=sweep.name, load_if_exists=True,
            direction="maximize" if spec.direction == "max" else "minimize",
            sampler=spec.make_sampler(), pruner=spec.make_pruner())


def load_study(folder: Path, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage(folder))


def trial_lock(sweep: Sweep, number: int) -> NodeLock | None:
    """The trial's lock, taken; None when another process holds it."""
    folder = sweep.folder / ".trials" / str(number)
    folder.mkdir(parents=True, exist_ok=True)
    lock = NodeLock(folder)
    try:
        lock.acquire()
    except NodeLockedError:
        return None
    return lock


def claim(sweep: Sweep, study, skip: set[int] = frozenset()):
    """(trial, lock): an orphaned running trial (but those in `skip`: this worker saw them
    crash), else a new one while the study has fewer than n_trials; None when there is
    nothing left to run."""
    import optuna
    from optuna.trial import TrialState

    with file_lock(sweep.folder / ".sweep.lock"):
        trials = study.get_trials(deepcopy=False)
        for frozen in trials:
            if frozen.state == TrialState.RUNNING and frozen.number not in skip:
                lock = trial_lock(sweep, frozen.number)
                if lock is not None:
                    log.info("sweep %s: trial %d was left running by a process that is gone: "
                             "retrying it", sweep.name, frozen.number)
                    return optuna.trial.Trial(study, frozen._trial_id), lock
        ordinary = [t for t in trials if PROMOTED not in t.user_attrs]
        if len(ordinary) >= sweep.search.n_trials:
            return None
        # One sampler per ask, seeded by the trials so far: workers draw as one process would.
        study.sampler = sweep.search.make_sampler(seed_offset=len(trials))
        trial = study.ask(sweep.search.distributions())
        lock = trial_lock(sweep, trial.number)
        return trial, lock


def promote(sweep: Sweep, study, number: int, num_epochs: int):
    """(trial, lock): a new trial with trial `number`'s parameters, recorded as its promotion."""
    with file_lock(sweep.folder / ".sweep.lock"):
        source = study.get_trials(deepcopy=False)[number]
        study.enqueue_trial(source.params, user_attrs={PROMOTED: number, NUM_EPOCHS: num_epochs},
                            skip_if_exists=False)
        trial = study.ask(sweep.search.distributions())
        if trial.user_attrs.get(PROMOTED) != number:  # cannot happen: asks hold the lock
            raise RuntimeError("the study handed out another trial")
        return trial, trial_lock(sweep, trial.number)
