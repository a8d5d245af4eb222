"""One MLflow run per result-tree node, in the store at `training.mlflow_uri` (default
sqlite:///<experiment_save_loc>/mlflow.db). Metric keys are the summary.csv columns (val-PSNR,
train-loss, ...), step = epoch (a step-based run: its step); params are the resolved config as dotted keys; tags record the
node: its folder, its parent's run (mlflow.parentRunId, so the UI nests a fork under its parent)
and the fork epoch. An in-place continue reopens the node's run (its id is in status.json); a
branch gets a new run that first receives the parent's history up to the fork. A node's run is
found again by its tags (`rumpy track` replays run folders into it), and a step already logged
is never logged twice, so replaying adds nothing."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from .registry import TRACKERS, Tracker, step_values, x_of

log = logging.getLogger(__name__)

NODE_TAG = "rumpy.node"           # the node's folder (absolute)
STATUS_KEY = "mlflow_run_id"
_NOT_METRICS = ("epoch", "inherited", "step")  # a step-based row's step is its x
_BATCH = 900                      # MLflow takes up to 1000 metrics per log_batch call


def warm() -> None:
    """MLflow's import, made while the run is being set up (output worker)."""
    from mlflow.tracking import MlflowClient  # noqa: F401


def default_uri(save_loc: str | Path) -> str:
    return f"sqlite:///{Path(save_loc).resolve() / 'mlflow.db'}"


def _artifacts(uri: str, experiment: str) -> str | None:
    """Beside a SQLite store's file (MLflow's default is ./mlruns in the working directory);
    a server or another store keeps its own default."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).parent / "mlflow-artifacts" / experiment).as_uri()


def _experiment_id(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifacts(uri, name))
    except Exception:  # another process created it in between
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _clip(value) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."  # MLflow's limit on a param


@TRACKERS.register("mlflow")
class MLflowTracker(Tracker):
    name = "MLflow"

    def __init__(self, client, run_id: str, eval_sets: list[str], logged: dict[str, set[int]]):
        super().__init__(eval_sets)
        self.client = client
        self.run_id = run_id
        self.logged = logged    # metric key -> steps already in the run

    @classmethod
    def open(cls, run) -> "MLflowTracker | None":
        cfg, node, plan = run.cfg, run.node, run.plan
        from ..config.load import to_toml_dict

        uri = cfg.training.mlflow_uri or default_uri(cfg.experiment_save_loc)
        experiment = cfg.sweep["name"] if cfg.sweep else cfg.experiment
        run_id = node.status.get(STATUS_KEY) if plan.kind == "continue" else None
        # a new node (or one made again at the same path) gets a new run; a continue its own
        tracker = cls.for_node(uri, experiment, node, to_toml_dict(cfg), list(run.eval_sets),
                               run_id=run_id, reuse=plan.kind == "continue", task=cfg.task)
        if tracker is not None:
            tracker.status = {STATUS_KEY: tracker.run_id}
            tracker.track_rows(plan.rows)
            t = cfg.training
            start = plan.start_epoch * (t.eval_every_n_steps if t.num_iterations else 1)
            later = sorted({s for key, steps in tracker.logged.items() for s in steps
                            if s > start and not key.startswith("steps/")})
            if later:  # an interrupted process logged epochs past its last checkpoint
                log.warning("MLflow run %s already has epochs %s (logged after the checkpoint "
                            "this run continues from); MLflow keeps those values, summary.csv "
                            "gets the retrained ones", tracker.run_id, later)
        return tracker

    @classmethod
    def for_node(cls, uri: str, experiment: str, node, config: dict, eval_sets: list[str],
                 run_id: str | None = None, reuse: bool = True, task: str | None = None
                 ) -> "MLflowTracker | None":
        """The node's run: `run_id` when it exists, else (`reuse`) the newest run tagged with
        the node's folder, else a new one. None with a warning when MLflow cannot be used."""
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment_id(client, experiment, uri)
            found = None
            if run_id:
                try:
                    found = client.get_run(run_id)
                except Exception as exc:  # deleted, or another store: a new run
                    log.warning("MLflow run %s could not be reopened (%s); starting a new one",
                                run_id, exc)
            if found is None and reuse:
                found = cls._tagged(client, experiment_id, node)
            if found is None:
                found = cls._create(client, experiment_id, experiment, node, config, task)
            elif found.info.status != "RUNNING":
                client.update_run(found.info.run_id, status="RUNNING")
            run_id = found.info.run_id
            logged = {key: {m.step for m in client.get_metric_history(run_id, key)}
                      for key in found.data.metrics}
            return cls(client, run_id, eval_sets, logged)
        except Exception as exc:
            hint = (" (pip install -c constraints.txt -e '.[mlflow]')"
                    if isinstance(exc, ImportError) else "")
            log.warning("MLflow tracking is off for this run (%s: %s%s); CSV and PNG logging go "
                        "on", type(exc).__name__, exc, hint)
            return None

    @staticmethod
    def _tagged(client, experiment_id: str, node):
        path = str(node.path.resolve()).replace("'", "\\'")
        query = f"tags.`{NODE_TAG}` = '{path}'"
        runs = client.search_runs([experiment_id], filter_string=query, max_results=1,
                                  order_by=["attributes.start_time DESC"])
        return runs[0] if runs else None

    @classmethod
    def _create(cls, client, experiment_id: str, experiment: str, node, config: dict,
                task: str | None):
        from mlflow.entities import Param, RunTag

        from ..config.compose import flatten

        parent = node.parent if node.rel else None
        tags = {"mlflow.runName": f"{experiment}/{node.rel}" if node.rel else experiment,
                NODE_TAG: str(node.path.resolve()), "rumpy.tree": str(node.root.resolve()),
                "rumpy.branch": node.rel or "."}
        if task:
            tags["rumpy.task"] = task
        if parent is not None:
            tags["rumpy.parent"] = parent.rel or "."
            tags["rumpy.fork_epoch"] = str(node.fork_epoch)
            parent_run = cls._parent_run(client, experiment_id, parent)
            if parent_run:
                tags["mlflow.parentRunId"] = parent_run
        found = client.create_run(experiment_id, tags=tags)
        params = [Param(k[:250], _clip(v)) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow's limit per call
            client.log_batch(found.info.run_id, params=params[i:i + 100])
        client.set_tag(found.info.run_id, "rumpy.params", "logged")
        return client.get_run(found.info.run_id)

    @classmethod
    def _parent_run(cls, client, experiment_id: str, parent) -> str | None:
        found = cls._tagged(client, experiment_id, parent)  # in this store, whatever made it
        return found.info.run_id if found else None

    def track_rows(self, rows: list[dict]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for row in rows:
            x = x_of(row)
            for key, value in row.items():
                if key in _NOT_METRICS or value is None or isinstance(value, str):
                    continue
                if x in self.logged.setdefault(key, set()):
                    continue
                self.logged[key].add(x)
                metrics.append(Metric(key, float(value), now, x))
        for i in range(0, len(metrics), _BATCH):
            self._safe(self.client.log_batch, self.run_id, metrics=metrics[i:i + _BATCH])

    def track_row(self, row: dict) -> None:
        self.track_rows([row])

    def track_steps(self, rows: list[dict]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for row in rows:
            step = int(row["step"])
            for column, value in step_values(row):
                key = f"steps/{column}"
                if step not in self.logged.setdefault(key, set()):
                    self.logged[key].add(step)
                    metrics.append(Metric(key, value, now, step))
        for i in range(0, len(metrics), _BATCH):
            self._safe(self.client.log_batch, self.run_id, metrics=metrics[i:i + _BATCH])

    def track_images(self, epoch: int, set_name: str, images: list,
                     step: int | None = None) -> None:
        at = f"epoch_{epoch}" if step is None else f"step_{step}"
        for caption, img in images:
            self._safe(self.client.log_image, self.run_id, img,
                       artifact_file=f"samples/{set_name}/{at}/{caption}.png")

    def close(self, state: str = "FINISHED") -> None:
        self._safe(self.client.set_terminated, self.run_id, state)
