"""Running a search: each worker claims a trial (study.py), trains its seeds one after the
other (each an ordinary node, from whatever state it is in: sweep/cell.py) with the pruning
hook (pruning.py), and tells the study how it ended. Running `rumpy sweep` again resumes: a
trial whose process died is retried into the same nodes and continues exactly; finished and
pruned trials are never trained again."""
from __future__ import annotations

import logging

from ..config import ConfigError
from ..core.run_folder import RunExistsError
from ..tree.lock import NodeLockedError
from .cell import resume_mode, train_node
from .pruning import TrialReport, pruned_by_search
from .run import _Stop
from .spec import Sweep
from .study import PROMOTED, claim, open_study, promote
from .trial import (TRIAL_STATUS, complete_value, metric_values, pruned_value, trial_cells,
                    trial_nodes)

log = logging.getLogger(__name__)


def run_trials(sweep: Sweep) -> int:
    """One worker: 0 when the study has its n_trials, 130 when interrupted, 1 when a trial
    failed (the others still ran)."""
    study = open_study(sweep)
    failed, given_up = 0, set()
    with _Stop() as stop:
        while True:
            if stop.requested:
                log.warning("sweep %s: stopped (Ctrl+C/SIGTERM); run it again to go on",
                            sweep.name)
                return 130
            claimed = claim(sweep, study, skip=given_up)
            if claimed is None:
                break
            trial, lock = claimed
            try:
                outcome = run_trial(sweep, study, trial)
            finally:
                lock.release()
            if outcome == "stopped":
                return 130
            if outcome == "failed":
                failed += 1
                given_up.add(trial.number)
    return 1 if failed else 0


def run_trial(sweep: Sweep, study, trial) -> str:
    """'done', 'failed' (told FAIL, or left running for the next run when it crashed) or
    'stopped' (interrupted: left running, retried by the next run)."""
    from optuna.trial import TrialState

    spec = sweep.search
    attrs = trial.user_attrs
    promoted = attrs.get(PROMOTED)
    try:
        cells = trial_cells(sweep, trial.number, trial.params, attrs)
    except ConfigError as exc:
        log.error("sweep %s: trial %d: %s", sweep.name, trial.number, exc)
        study.tell(trial, state=TrialState.FAIL)
        return "failed"
    prune = promoted is None and spec.pruner["name"] != "none"
    status = {TRIAL_STATUS: trial.number, "optuna_study": sweep.name}
    if promoted is not None:
        status[PROMOTED] = promoted
    params = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in trial.params.items())
    earlier: list[dict[int, float]] = []
    nodes = []
    for index, cell in enumerate(cells):
        node = cell.node
        num_epochs = cell.config.training.num_epochs
        state = node.state() if node.exists() else "new"
        if pruned_by_search(node.status) and node.exists():
            node.set_status(state="pruned")
            return _tell_pruned(sweep, study, trial, nodes + [node])
        if state == "diverged":
            log.warning("sweep %s: trial %d diverged (%s)", sweep.name, trial.number, cell.label)
            study.tell(trial, state=TrialState.FAIL)
            return "done"
        if state not in ("finished", "stopped_early"):
            mode = resume_mode(node, num_epochs)
            verb = "starting" if mode == "new" else f"{mode} of"
            report = TrialReport(trial, index, num_epochs, spec.metric, list(earlier), prune,
                                 status)
            try:
                state, stop_requested = train_node(
                    cell.config, node, mode, [report],
                    announce=f"sweep {sweep.name}: {verb} trial {trial.number} ({params}), "
                             f"seed {cell.seed}: {cell.label}")
            except (RunExistsError, NodeLockedError) as exc:
                log.warning("sweep %s: trial %d: %s", sweep.name, trial.number, exc)
                return "failed"
            except ConfigError as exc:
                log.error("sweep %s: trial %d: %s", sweep.name, trial.number, exc)
                study.tell(trial, state=TrialState.FAIL)
                return "failed"
            except Exception:  # noqa: BLE001 - the node is marked crashed: a later run retries
                log.exception("sweep %s: trial %d crashed (%s); `rumpy sweep` again retries it",
                              sweep.name, trial.number, cell.label)
                return "failed"
            if state == "interrupted":
                return "stopped"
            if report.pruned:
                return _tell_pruned(sweep, study, trial, nodes + [node])
            if state == "diverged":
                study.tell(trial, state=TrialState.FAIL)
                return "done"
            if stop_requested and index < len(cells) - 1:
                return "stopped"
        nodes.append(node)
        earlier.append(metric_values(node, spec.metric))
    value = complete_value(nodes, spec.metric, spec.direction)
    if value is None:
        log.error("sweep %s: trial %d has no %s value", sweep.name, trial.number, spec.metric)
        study.tell(trial, state=TrialState.FAIL)
        return "failed"
    study.tell(trial, value)
    log.info("sweep %s: trial %d (%s): %s %.4f", sweep.name, trial.number, params, spec.metric,
             value)
    return "done"


def _tell_pruned(sweep: Sweep, study, trial, nodes) -> str:
    from optuna.trial import TrialState

    study.tell(trial, state=TrialState.PRUNED)
    value = pruned_value(nodes, sweep.search.metric)
    log.info("sweep %s: trial %d pruned (%s %s)", sweep.name, trial.number, sweep.search.metric,
             "n/a" if value is None else f"{value:.4f}")
    return "done"


def promote_trial(sweep: Sweep, number: int, num_epochs: int) -> int:
    """`rumpy sweep FILE --promote T --num_epochs N`: a new trial with T's parameters that
    continues T's nodes to N epochs (as branches), trained here without pruning."""
    from optuna.trial import TrialState

    study = open_study(sweep)
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        log.error("sweep %s: no trial %d (trials 0..%d)", sweep.name, number, len(trials) - 1)
        return 2
    source = trials[number]
    if source.state not in (TrialState.PRUNED, TrialState.COMPLETE):
        log.error("sweep %s: trial %d is %s; only a pruned or complete trial is promoted",
                  sweep.name, number, source.state.name.lower())
        return 2
    done = max((max(metric_values(n, sweep.search.metric), default=0)
                for n in trial_nodes(sweep, number, source.user_attrs)), default=0)
    if num_epochs <= done:
        log.error("sweep %s: --num_epochs %d: trial %d already has %d epochs; promote it to "
                  "more", sweep.name, num_epochs, number, done)
        return 2
    trial, lock = promote(sweep, study, number, num_epochs)
    log.info("sweep %s: trial %d promotes trial %d to %d epochs", sweep.name, trial.number,
             number, num_epochs)
    try:
        outcome = run_trial(sweep, study, trial)
    finally:
        lock.release()
    return {"done": 0, "failed": 1, "stopped": 130}[outcome]
