"""The commands that read results (`rumpy tree`, `export`, `export --best`, `table`, `report`,
`plot`) on trees of 25, 50 and 100 nodes: the wall time of each command as a fresh process (what
a user waits for, imports included), and whether it grows in proportion to the nodes (O(nodes)).

Run: .venv/bin/python benchmarks/tree_tools.py [--nodes 100] [--keep DIR]
One real tiny run (a root and one branch, a few seconds of CPU) is trained once; the larger
trees are forged from it by copying the branch's folder (its summary, lineage, status,
samples and checkpoints: the tools peek at each checkpoint's summary row to check summary.csv),
nested every 10th node so the tree has depth. Target: each command under 1 s at 100 nodes (docs/performance.md)."""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def train_seed_tree(work: Path) -> Path:
    """A real tree: root (3 epochs) and branch b @2 (to 4); returns the experiment folder."""
    from conftest import make_pairs, tiny_toml

    sets = {}
    sets["train_lr"], sets["train_hr"] = make_pairs(work / "train", 2, 48, ["astronaut"], 4)
    sets["val_lr"], sets["val_hr"] = make_pairs(work / "val", 2, 40, ["chelsea"], 2,
                                                naming="same")
    cfg = work / "cfg.toml"
    cfg.write_text(tiny_toml(sets, work / "seed", work / "cache", num_epochs=3))
    train = [sys.executable, "-m", "rumpy.cli.main", "train", "--parameters", str(cfg)]
    subprocess.run(train, check=True, capture_output=True)
    subprocess.run(train + ["--continue_from_epoch", "2", "--new_branch", "--new_branch_name",
                            "b", "--num_epochs", "4"], check=True, capture_output=True)
    return work / "seed" / "tiny"


def _copy(source: Path, target: Path) -> None:
    """As training leaves a node: last.pt and best.pt stay hard links to their epoch's file
    (shutil.copytree would make them separate files, which readers must then open)."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def forge(seed: Path, out: Path, nodes: int) -> Path:
    """A tree of `nodes` nodes under out/tiny: the seed's root and nodes - 1 copies of its
    branch; every 10th copy nests under the copy before it."""
    tree = out / "tiny"
    _copy(seed, tree)
    shutil.rmtree(tree / "b")
    parent, rel = tree, ""
    for i in range(1, nodes):
        name = f"b{i:03d}"
        if i % 10 == 0 and i > 1:
            parent, rel = last, last_rel  # noqa: F821 (set by the previous iteration)
        target = parent / name
        _copy(seed / "b", target)
        lineage = json.loads((target / "lineage.json").read_text())
        lineage["parent"] = rel
        (target / "lineage.json").write_text(json.dumps(lineage))
        last, last_rel = target, f"{rel}/{name}" if rel else name
    return tree


def forge_sweep(seed: Path, out: Path, cells: int) -> Path:
    """A sweep folder of `cells` copies of the seed's root, with its sweep.json."""
    folder = out / "sw"
    folder.mkdir()
    names = []
    for i in range(cells):
        name = f"lr=0.001,seed={i}"
        shutil.copytree(seed, folder / name, ignore=shutil.ignore_patterns("saved_models", "b"))
        (folder / name / "saved_models").mkdir()
        names.append({"name": name, "values": {"model.internal_params.lr": 0.001}, "seed": i})
    (folder / "sweep.json").write_text(json.dumps({
        "source": str(out / "sweep.toml"), "name": "sw", "seeds": list(range(cells)),
        "grid": {"model.internal_params.lr": [0.001]}, "cells": names}))
    return folder


def timed(argv: list[str], rounds: int = 3) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `rounds` runs as a fresh process. CPU (user +
    system of the child) hardly depends on what else the machine runs; wall does."""
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rumpy.cli.main", *argv], check=True,
                       capture_output=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        best = min(best, (wall, cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[25, 50, 100])
    parser.add_argument("--keep", type=Path, help="forge the trees here and keep them")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tree_tools."))
    try:
        seed = train_seed_tree(work)
        sizes = sorted(args.nodes)
        results: dict[str, list[tuple[float, float]]] = {}
        for n in sizes:
            out = (args.keep or work) / f"n{n}"
            out.mkdir(parents=True)
            tree = forge(seed, out, n)
            sweep = forge_sweep(seed, out, n)
            commands = {
                "tree": ["tree", str(tree)],
                "export": ["export", str(tree), "-o", str(work / "e.csv")],
                "export --best": ["export", str(tree), "--best", "PSNR", "-o", str(work / "b.csv")],
                "table (sweep)": ["table", str(sweep), "-o", str(work / "t")],
                "report": ["report", str(tree), "-o", str(work / "r.html")],
                "report --no-samples": ["report", str(tree), "-o", str(work / "r.html"),
                                        "--no-samples"],
                "plot": ["plot", str(tree), "-o", str(work / "p.png")],
            }
            for name, argv in commands.items():
                results.setdefault(name, []).append(timed(argv))
        python = timed_python()
        print(f"python -c 'import rumpy.cli.main' alone: {python:.2f} s")
        head = "".join(f"{n:>11d} nodes" for n in sizes)
        print(f"wall / CPU seconds as a fresh process (best of 3)")
        print(f"{'command':22s}{head}   CPU per node   under 1 s at {sizes[-1]}")
        for name, times in results.items():
            cells = "".join(f"   {w:5.2f} / {c:4.2f}" for w, c in times)
            per_node = (times[-1][1] - times[0][1]) / max(1, sizes[-1] - sizes[0]) * 1000
            print(f"{name:22s}{cells}   {per_node:6.1f} ms   "
                  f"wall {'yes' if times[-1][0] < 1 else 'NO'}, "
                  f"CPU {'yes' if times[-1][1] < 1 else 'NO'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def timed_python() -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import rumpy.cli.main"], check=True)
        best = min(best, time.perf_counter() - start)
    return best


if __name__ == "__main__":
    main()
