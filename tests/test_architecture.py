"""The layering the design promises, checked on the code: packages import downwards only (no
cycle, lazy imports counted), the config layer imports no task, dataset kind or model, and the
commands after training (rumpy/inference/) name no task."""
from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _graph_module():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" /
                                                  "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_between_packages():
    graph = _graph_module()
    edges = graph.graph()
    assert graph.cycles(edges) == []
    # the config layer sits below every component it configures
    assert set(edges["config"]) <= {"registry", "utils", "plugins"}, dict(edges["config"])


def test_the_cycle_finder_finds_a_cycle():
    graph = _graph_module()
    assert graph.cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == [["a", "b", "c"]]
    assert graph.cycles({"a": {"b": []}, "b": {}}) == []


def test_importing_the_config_layer_imports_no_task_kind_or_model():
    code = ("import sys, rumpy.config, rumpy.config.load\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('rumpy.tasks', 'rumpy.data', "
            "'rumpy.models', 'rumpy.metrics', 'torch')))\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"


# The commands that read results: a researcher runs them often, on many nodes, and torch alone
# is ~80% of a process's import time. tests/test_report.py runs each command and checks again.
TORCH_FREE = ("rumpy.cli.main", "rumpy.cli.sweep", "rumpy.tree.render", "rumpy.results.export",
              "rumpy.results.compare", "rumpy.sweep.table", "rumpy.sweep.run",
              "rumpy.report.page", "rumpy.core.columns", "rumpy.core.monitor", "rumpy.metrics")


def test_the_tree_tools_import_no_torch():
    code = (f"import sys, {', '.join(TORCH_FREE)}\n"
            "from rumpy.metrics import higher_is_better, metric_names\n"
            "assert higher_is_better('PSNR') and not higher_is_better('LPIPS'), 'directions'\n"
            "assert 'R2' in metric_names('regression'), metric_names('regression')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_each_package_metric_has_its_declared_direction():
    """metrics/declared.py is where a package metric's direction is written; the registered
    classes (loaded with torch) carry the same."""
    from rumpy.metrics import METRICS
    from rumpy.metrics.declared import BUILTIN

    for key, info in BUILTIN.items():
        for tasks, cls, _ in METRICS.all(key):
            assert (cls.name, cls.higher_is_better, tasks) == (info.name, info.higher_is_better,
                                                              info.tasks)


def test_inference_names_no_task():
    """Every string literal in rumpy/inference/ that is a task's name would be a branch on it."""
    names = {"sisr", "regression"}
    found = []
    for path in sorted((ROOT / "rumpy" / "inference").rglob("*.py")):
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type == tokenize.STRING and token.string.strip("'\"fbr") in names:
                found.append(f"{path.name}:{token.start[0]} {token.string}")
    assert found == []
