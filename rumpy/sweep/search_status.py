"""`rumpy sweep FILE --status` for a search: the study's trials and their states."""
from __future__ import annotations


def search_status_lines(sweep) -> list[str]:
    from .study import JOURNAL, load_study

    if not (sweep.folder / JOURNAL).is_file():
        return [f"sweep {sweep.name}: a search of {sweep.search.n_trials} trials, not begun"]
    study = load_study(sweep.folder, sweep.name)
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    lines = [f"sweep {sweep.name}: {len(trials)} of {sweep.search.n_trials} trials; " +
             ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    lines += [f"  trial {t.number}: {t.state.name.lower()}" for t in trials
              if t.state.name not in ("COMPLETE", "PRUNED")]
    return lines
