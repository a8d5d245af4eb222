"""`rumpy report` on a real tree (two branches, an eval) and a sweep: one self-contained HTML file,
opened in headless Chromium (screenshot not blank, no console message); and the tree tools
(tree, export, table, report) run without importing torch."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main

SWEEP = """
[sweep]
seeds = [1, 2]
[sweep.grid]
"model.internal_params.lr" = [1e-3]
"""
SEARCH = """
[sweep]
seeds = [1]
[sweep.search]
n_trials = 2
metric = "val-PSNR"
sampler = { name = "random", seed = 0 }
[sweep.search.space]
"model.internal_params.lr" = { low = 1e-4, high = 1e-2, log = true }
"""


@pytest.fixture(scope="module")
def results(tiny_sets, tmp_path_factory) -> Path:
    """Results/tiny: root (3 epochs), branch a @2 (to 4), branch b @1 (to 2, lr changed), a/deep
    @3 (to 4), an eval of a; Results/sw: a sweep of one setting x two seeds, 1 epoch each;
    Results/srch: a search of two trials, 1 epoch each."""
    from conftest import tiny_toml

    tmp = tmp_path_factory.mktemp("report")
    path = tmp / "cfg.toml"
    path.write_text(tiny_toml(tiny_sets, tmp / "Results", tmp / "cache", num_epochs=3))
    assert train_main(["--parameters", str(path)]) == 0
    branch = ["--parameters", str(path), "--new_branch", "--new_branch_name"]
    assert train_main(branch + ["a", "--continue_from_epoch", "2", "--num_epochs", "4"]) == 0
    assert train_main(branch + ["b", "--continue_from_epoch", "1", "--num_epochs", "2",
                                "model.internal_params.lr=3e-4"]) == 0
    assert train_main(branch + ["deep", "--branch_root", "a", "--continue_from_epoch", "3",
                                "--num_epochs", "4"]) == 0
    assert rumpy_main(["eval", str(tmp / "Results" / "tiny" / "a")]) == 0
    sweep = tmp / "sweep.toml"
    sweep.write_text(tiny_toml(tiny_sets, tmp / "Results", tmp / "cache", num_epochs=1,
                               experiment="sw", extra_training='logging = "text"') + SWEEP)
    assert rumpy_main(["sweep", str(sweep)]) == 0
    search = tmp / "search.toml"
    search.write_text(tiny_toml(tiny_sets, tmp / "Results", tmp / "cache", num_epochs=1,
                                experiment="srch", extra_training='logging = "text"') + SEARCH)
    assert rumpy_main(["sweep", str(search)]) == 0
    return tmp / "Results"


def _data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="rumpy-data">(.*?)</script>', html,
                      re.S)
    return json.loads(found.group(1).replace("<\\/", "</"))


@pytest.mark.slow
def test_report_holds_the_tree_sweep_eval_and_samples_in_one_file(results, tmp_path):
    out = tmp_path / "r.html"
    assert rumpy_main(["report", str(results), "-o", str(out)]) == 0
    html = out.read_text()
    # self-contained: nothing loaded from elsewhere (the SVG namespace is a name, not a load)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<link rel=\"stylesheet\"" not in html and "url(http" not in html
    data = _data(html)
    nodes = {n["id"]: n for n in data["nodes"]}
    assert {"tiny", "tiny/a", "tiny/b", "tiny/a/deep"} <= set(nodes)
    assert len([n for n in nodes if n.startswith("sw/")]) == 2
    assert len([n for n in nodes if n.startswith("srch/")]) == 2
    a, deep, b = nodes["tiny/a"], nodes["tiny/a/deep"], nodes["tiny/b"]
    assert (a["parent"], a["fork_epoch"], a["epochs"]) == ("tiny", 2, [3, 4])
    assert (deep["parent"], deep["fork_epoch"]) == ("tiny/a", 3)
    assert [r[1] for r in deep["rows"]] == [1, 1, 1, 0]  # inherited epochs flagged
    assert b["settings"]["model.internal_params.lr"] == 3e-4
    assert all(n["state"] == "finished" for n in nodes.values())
    assert a["best"]["column"] == "val-PSNR" and a["best"]["epoch"] in (3, 4)
    assert a["eval"] and a["eval"][0]["set"] == "chelsea"
    assert a["samples"] and a["samples"][0]["src"].startswith("data:image/jpeg;base64,")
    sweeps = {s["name"]: s for s in data["sweeps"]}
    assert set(sweeps) == {"sw", "srch"}
    assert sweeps["sw"]["keys"] == ["model.internal_params.lr"]
    assert sweeps["sw"]["rows"][0]["n"] == 2
    search = sweeps["srch"]
    assert search["keys"] == ["trial", "model.internal_params.lr", "state"]
    assert sorted(r["trial"] for r in search["rows"]) == [0, 1]
    assert search["metrics"] == ["val-PSNR"] and search["rows"][0]["best"] == "*"
    # a branch folder reports its subtree; --no-samples leaves the images out
    assert rumpy_main(["report", str(results / "tiny" / "a"), "-o", str(out), "--no-samples"]) == 0
    sub = _data(out.read_text())
    assert [n["id"] for n in sub["nodes"]] == ["tiny/a", "tiny/a/deep"]
    assert not any(n["samples"] for n in sub["nodes"])


def test_report_refuses_a_folder_without_runs_and_an_output_inside_a_run(results, tmp_path,
                                                                         caplog):
    assert rumpy_main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    assert "no run folders" in caplog.text
    inside = results / "tiny" / "r.html"
    assert rumpy_main(["report", str(results), "-o", str(inside)]) == 2
    assert not inside.exists()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(results, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (scripts/test.sh installs it with apt-get as root)")
    page = tmp_path / "report.html"
    assert rumpy_main(["report", str(results), "-o", str(page)]) == 0
    shot = tmp_path / "shot.png"
    # Every host resolves to nothing: a page that tried to load anything would log an error.
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
                          "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1280,1600",
                          f"--screenshot={shot}", "--enable-logging=stderr", "--v=0",
                          page.as_uri()], capture_output=True, text=True, timeout=180)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert shot.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (1600, 1280)
    assert pixels.std() > 20  # not a blank page
    # the curves and the tree are drawn: many distinct colours, not just text on white
    assert len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 200


TOOLS = [["tree", "{tiny}"], ["export", "{results}", "-o", "{tmp}/e.csv"],
         ["export", "{results}", "--best", "PSNR", "-o", "{tmp}/b.csv"],
         ["table", "{results}/sw"], ["report", "{results}", "-o", "{tmp}/r.html"]]


@pytest.mark.parametrize("argv", TOOLS, ids=[" ".join(a[:2]) for a in TOOLS])
def test_tree_tools_import_no_torch(results, tmp_path, argv):
    argv = [a.format(results=results, tiny=results / "tiny", tmp=tmp_path) for a in argv]
    code = ("import sys\nfrom rumpy.cli.main import main\n"
            f"code = main({argv!r})\n"
            "assert code == 0, code\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_plot_of_many_nodes_names_the_best_and_groups_the_others(results, tmp_path):
    """A tree of 26 nodes (copies of a real branch, each with its own lineage): the legend names
    the 10 best by the column's direction, the rest are one 'others' entry; the PNG keeps the
    size it has at 11 nodes."""
    from rumpy.results.compare import TOP_K, compare_figure

    tree = tmp_path / "tiny"
    shutil.copytree(results / "tiny", tree, ignore=shutil.ignore_patterns("a", "b"))
    for i in range(25):
        copy = tree / f"c{i:02d}"
        # without its checkpoints: readers would correct the edited values below from them
        shutil.copytree(results / "tiny" / "b", copy, ignore=shutil.ignore_patterns("*.pt"))
        summary = copy / "result_outputs" / "summary.csv"
        lines = summary.read_text().splitlines()
        head = lines[0].split(",")
        col = head.index("val-PSNR")
        rows = [line.split(",") for line in lines[1:]]
        for row in rows:
            if row[head.index("inherited")] == "0":
                row[col] = str(float(row[col]) + i / 10)  # c24 best, then c23, ...
        summary.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    fig, drawn = compare_figure(tree, "PSNR")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(drawn) == 26
    assert labels[0] == f"others ({26 - TOP_K} nodes)"
    assert labels[1:1 + TOP_K] == [f"c{i:02d}" for i in range(15, 25)]
    assert labels[-1].startswith("bicubic")
    out = tmp_path / "many.png"
    assert rumpy_main(["plot", str(tree), "-o", str(out)]) == 0
    with Image.open(out) as img:
        assert img.height < 700 and img.width < 1200
