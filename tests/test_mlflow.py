"""MLflow for real: training with trackers = ["mlflow"] (a continue keeps the node's run and
logs no epoch twice; a fork is a new run nested under its parent's), and `rumpy track` replaying
run folders into MLflow and TensorBoard after the fact (every value equal to summary.csv, a
second replay adds nothing and keeps the run ids). Read back with the trackers' own readers."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed "
                                              "(pip install -c constraints.txt -e '.[mlflow]')")


def summary(node: Path) -> dict[str, dict[int, float]]:
    """{column: {epoch: value}} of a node's summary.csv (numeric cells)."""
    out: dict[str, dict[int, float]] = {}
    with open(node / "result_outputs" / "summary.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key not in ("epoch", "inherited") and value != "":
                    out.setdefault(key, {})[int(row["epoch"])] = float(value)
    return out


def history(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
            for key in run.data.metrics}


def assert_equals_summary(client, run_id: str, node: Path) -> None:
    got = history(client, run_id)
    want = summary(node)
    assert set(got) == set(want)
    for key, values in want.items():
        assert got[key] == sorted(values.items()), key  # once per epoch, the very value


def status(node: Path) -> dict:
    return json.loads((node / "status.json").read_text())


def client_for(results: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{results.resolve() / 'mlflow.db'}")


@pytest.mark.slow
def test_training_with_mlflow_continue_and_fork(write_config, tmp_path):
    path = write_config(num_epochs=2, extra_training='trackers = ["mlflow"]')
    assert train_main(["--parameters", str(path)]) == 0
    root = tmp_path / "Results" / "tiny"
    first = status(root)["mlflow_run_id"]
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "3"]) == 0
    assert status(root)["mlflow_run_id"] == first
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "2", "--new_branch",
                       "--new_branch_name", "fork", "--num_epochs", "4"]) == 0
    client = client_for(tmp_path / "Results")
    assert_equals_summary(client, first, root)
    branch = status(root / "fork")["mlflow_run_id"]
    assert branch != first
    assert_equals_summary(client, branch, root / "fork")  # its inherited epochs 1-2 too
    run = client.get_run(branch)
    assert run.data.tags["mlflow.parentRunId"] == first
    assert run.data.tags["rumpy.fork_epoch"] == "2" and run.data.tags["rumpy.branch"] == "fork"
    assert run.data.tags["mlflow.runName"] == "tiny/fork"
    assert run.data.params["training.num_epochs"] == "4"
    assert run.info.status == "FINISHED"
    experiment = client.get_experiment_by_name("tiny")
    assert len(client.search_runs([experiment.experiment_id])) == 2
    # replaying the trained tree finds each node's run and adds nothing
    assert rumpy_main(["track", str(tmp_path / "Results"), "--to", "mlflow"]) == 0
    assert len(client.search_runs([experiment.experiment_id])) == 2
    assert_equals_summary(client, first, root)
    assert_equals_summary(client, branch, root / "fork")


def test_track_replays_a_tree_into_mlflow_and_tensorboard_idempotently(write_config, tmp_path,
                                                                       capsys):
    path = write_config(num_epochs=3)  # trackers off (aim_track = false)
    assert train_main(["--parameters", str(path)]) == 0
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "2", "--new_branch",
                       "--new_branch_name", "b", "--num_epochs", "4"]) == 0
    results, root = tmp_path / "Results", tmp_path / "Results" / "tiny"
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert rumpy_main(["track", str(results), "--to", "mlflow", "--uri", uri]) == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = {r.data.tags["rumpy.branch"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {".", "b"}
    assert runs["b"].data.tags["mlflow.parentRunId"] == runs["."].info.run_id
    assert_equals_summary(client, runs["."].info.run_id, root)
    assert_equals_summary(client, runs["b"].info.run_id, root / "b")
    capsys.readouterr()
    assert rumpy_main(["track", str(results), "--to", "mlflow", "--uri", uri]) == 0
    assert capsys.readouterr().out.count(": 0 values added") == 2
    again = {r.data.tags["rumpy.branch"]: r.info.run_id
             for r in client.search_runs([experiment.experiment_id])}
    assert again == {k: r.info.run_id for k, r in runs.items()}
    assert_equals_summary(client, runs["b"].info.run_id, root / "b")
    assert not (tmp_path / "mlruns").exists() and not Path("mlruns").exists()

    # TensorBoard: event files per node, equal to summary.csv (as float32), replayed once
    assert rumpy_main(["track", str(root), "--to", "tensorboard"]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars(node: Path) -> dict:
        events = EventAccumulator(str(node / "tensorboard"), size_guidance={"scalars": 0})
        events.Reload()
        return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
                for tag in events.Tags()["scalars"]}

    import numpy as np
    first = scalars(root / "b")
    want = summary(root / "b")
    assert first["val/chelsea/PSNR"] == [(e, float(np.float32(v)))
                                         for e, v in sorted(want["val-PSNR"].items())]
    assert [s for s, _ in first["train/loss"]] == [1, 2, 3, 4]
    assert rumpy_main(["track", str(root), "--to", "tensorboard"]) == 0
    assert scalars(root / "b") == first

    # Aim: a run per node made once, its hash in status.json; a second replay adds nothing
    assert rumpy_main(["track", str(root), "--to", "aim"]) == 0
    hashes = [status(root)["aim_run_hash"], status(root / "b")["aim_run_hash"]]
    capsys.readouterr()
    assert rumpy_main(["track", str(root), "--to", "aim"]) == 0
    assert capsys.readouterr().out.count(": 0 epochs added") == 2
    assert [status(root)["aim_run_hash"], status(root / "b")["aim_run_hash"]] == hashes
