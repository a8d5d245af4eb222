"""`rumpy sweep FILE --status` for a search: the study's trials and their states."""
from __future__ import annotations


def search_status_lines(sweep) -> list[str]:
    from .study import JOURNAL, PROMOTED, load_study

    if not (sweep.folder / JOURNAL).is_file():
        return [f"sweep {sweep.name}: a search of {sweep.search.n_trials} trials, not begun"]
    study = load_study(sweep.folder, sweep.name)
    trials = study.get_trials(deepcopy=False)
    states = {t.number: _state(sweep, t) for t in trials}
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    promoted = sum(1 for t in trials if PROMOTED in t.user_attrs)
    extra = f" + {promoted} promoted" if promoted else ""
    lines = [f"sweep {sweep.name}: {len(trials) - promoted} of {sweep.search.n_trials} "
             f"trials{extra}; " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    for t in trials:
        value = f", {sweep.search.metric} {t.value:.6g}" if t.value is not None else ""
        source = f" (promoted from trial {t.user_attrs[PROMOTED]})" \
            if PROMOTED in t.user_attrs else ""
        lines.append(f"  trial {t.number}: {states[t.number]}{value}{source}")
    if any(s == "stopped" for s in states.values()):
        lines.append(f"  (stopped trials go on, exactly, when `rumpy sweep {sweep.source}` runs "
                     f"again)")
    return lines


def _state(sweep, trial) -> str:
    """Optuna's state, but a 'running' trial whose nodes no live process holds is 'stopped'
    (killed, or Ctrl+C): the next `rumpy sweep` retries it into the same nodes."""
    from ..tree.lock import lock_holder
    from .trial import trial_nodes

    state = trial.state.name.lower()
    if state != "running":
        return state
    nodes = trial_nodes(sweep, trial.number, trial.user_attrs)
    if any(lock_holder(node.path) is not None for node in nodes):
        return "running"
    return "stopped"
