"""Task 'regression': predict a vector of targets from features, tensors or images. Batches are
{"inputs", "targets"}; inputs and targets may be z-scored with training-set statistics (kept in
the checkpoint as task state); the loss is computed in the normalised or the original space;
metrics are whole-set (MAE, RMSE, R2, Pearson), always in original units, per target and
averaged; the baseline predicts the training-set mean; visuals are predicted-vs-true scatters."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.arrays import check_arrays_set
from ..data.images import to_float
from ..data.images_with_targets import check_images_set
from ..data.loaders import Loaders
from ..data.holdout import hold_out, with_held_out
from ..data.regression import (RegressionSet, eval_loaders, build_loaders, check_consistent, input_statistics,
                               target_statistics)
from ..metrics import METRICS
from ..models import MODELS
from ..core.losses import build_loss
from .base import TASKS, EvalResult, InferenceError, Task
from .regression_infer import RegressionNetwork, export_contract, export_examples, predict_samples

_CHECKERS = {"arrays": check_arrays_set, "images_with_targets": check_images_set}


@TASKS.register("regression")
class RegressionTask(Task):
    name = "regression"
    dataset_kinds = ("arrays", "images_with_targets")
    model_inputs = ("input_shape", "num_outputs")
    baseline_name = "mean predictor"
    per_sample_file = "per_sample"
    config_defaults = {
        "training.metrics": ["MAE", "RMSE", "R2", "Pearson"],
        "training.best_load_metric": "val-RMSE",
        "training.early_stopping_metric": "val-RMSE",
        "model.internal_params.loss": "mse",
        "data.normalize_inputs": True,
        "data.normalize_targets": True,
        "data.loss_space": "normalized",
    }

    def check_data(self) -> None:
        cfg = self.cfg
        kinds = {ds.type for ds in cfg.data.training_sets.values()} | \
                {ds.type for ds in cfg.data.eval_sets.values()}
        if len(kinds) > 1:
            self.fail("data", f"every set needs the same dataset type, got {sorted(kinds)}")
        self._train = [self.check_set("training_sets", label, ds)
                       for label, ds in cfg.data.training_sets.items()]
        self._evals = [self.check_set("eval_sets", label, ds)
                       for label, ds in cfg.data.eval_sets.items()]
        self._train, self._evals = hold_out(cfg, self._train, self._evals,
                                            list(cfg.data.training_sets))
        names = [ds.name for ds in self._evals]
        if len(set(names)) != len(names):
            self.fail("data.eval_sets", f"eval set names must differ, got {names}")
        check_consistent(cfg, self._train, self._evals)
        self._check_sizes()
        self.target_names = self._train[0].target_names
        shape = self._train[0].sample_shape()
        if getattr(MODELS.get(cfg.model.name), "fixed_input_shape", False):
            for ds in self._evals:
                if ds.sample_shape() != shape:
                    self.fail(f"data.eval_sets.{ds.label}", f"{cfg.model.name} takes inputs of "
                                                            f"the training shape {shape}, these "
                                                            f"samples are {ds.sample_shape()}; "
                                                            f"set the same crop")
        reserved = {m.lower() for m in self.metric_names()} | {"loss"}
        for name in self.target_names:
            if name.lower() in reserved or "-" in name:
                self.fail("data.training_sets", f"target name {name!r} cannot name a summary "
                                                f"column (no '-', not a metric name); rename it")

    def check_set(self, section: str, label: str, ds) -> RegressionSet:
        return _CHECKERS[ds.type](self.cfg, section, label, ds)

    @property
    def fixed_input_shape(self) -> bool:
        return bool(getattr(MODELS.get(self.cfg.model.name, self.scopes()), "fixed_input_shape",
                            False))

    def _check_sizes(self) -> None:
        """A single training sample has no spread to normalise by, and the mean predictor
        (the baseline) would be that sample; a metric such as R2 is undefined on one sample."""
        if sum(len(ds) for ds in self._train) < 2:
            self.fail("data.training_sets", f"{sum(len(ds) for ds in self._train)} training "
                                            f"sample; expected at least 2 (training-set "
                                            f"statistics need a spread)")
        for ds in self._evals:
            for name in self.cfg.training.metrics:
                need = METRICS.meta(name, self.scopes()).get("min_samples", 1)
                if len(ds) < need:
                    self.fail(f"data.eval_sets.{ds.label}", f"{len(ds)} sample; "
                                                            f"{METRICS.get(name, self.scopes()).name} needs at "
                                                            f"least {need}")

    def training_samples(self) -> dict[str, int]:
        return {ds.label: len(ds) * ds.config.repeat for ds in self._train}

    def setup(self, device: torch.device, stage: str = "fit", held_out: bool = False) -> Loaders:
        cfg = self.cfg
        self.device = device
        self.metrics = self.build_metrics(device)
        self.criterion = build_loss(cfg.model.internal_params.loss).to(device)
        if stage != "fit":  # statistics, targets and input shape come from the checkpoint
            self._evals = self._check_eval_sets(held_out) if stage == "evaluate" else []
            self.loaders = Loaders(None, None, eval_loaders(cfg, self._evals,
                                                            device.type == "cuda"))
            self._place_stats()
            return self.loaders
        self.loaders = build_loaders(cfg, self._train, self._evals, device.type == "cuda")
        in_mean, in_std = input_statistics(self._train)
        out_mean, out_std = target_statistics(self._train)
        self.stats = {"input_mean": in_mean, "input_std": in_std,
                      "target_mean": out_mean, "target_std": out_std}
        self._place_stats()
        return self.loaders

    def _check_eval_sets(self, held_out: bool) -> list[RegressionSet]:
        """The eval sets alone, checked against the model the checkpoint holds."""
        cfg = self.cfg
        shape = list(self.model_kwargs()["input_shape"])
        sets = [(label, self.check_set("eval_sets", label, ds))
                for label, ds in cfg.data.eval_sets.items()]
        if held_out:
            held = with_held_out(cfg, lambda c, s, label, ds: self.check_set(s, label, ds),
                                 [checked for _, checked in sets])
            sets += [(f"{ds.label}_test", ds) for ds in held[len(sets):]]
        evals = []
        for label, checked in sets:
            where = f"data.eval_sets.{label}"
            if checked.target_names != self.target_names:
                self.fail(where, f"targets {checked.target_names} differ from the model's "
                                 f"{self.target_names}")
            got = checked.sample_shape()
            if 0 in got:
                self.fail(f"{where}.crop", "the images differ in size: set a crop")
            if len(got) != len(shape) or got[0] != shape[0] or \
                    (self.fixed_input_shape and got != shape):
                self.fail(where, f"samples of shape {got}; the model was trained on {shape}")
            evals.append(checked)
        names = [ds.name for ds in evals]
        if len(set(names)) != len(names):
            self.fail("data.eval_sets", f"eval set names must differ, got {names}")
        return evals

    def eval_order(self) -> list[tuple[str, list[str]]]:
        return [(ds.name, list(ds.ids)) for ds in self._evals]

    def _place_stats(self) -> None:
        s = self.stats
        self._in = (s["input_mean"].to(self.device), s["input_std"].to(self.device))
        # float64: targets with a large mean and a small spread keep their digits
        self._out = (s["target_mean"].to(self.device), s["target_std"].to(self.device))

    def overfit(self, batch: dict) -> None:
        size = len(batch["targets"])
        first = self._train[0]
        self._evals = [RegressionSet("overfit", "overfit", first.config,
                                     [f"sample_{i}" for i in range(size)],
                                     batch["targets"].double().numpy(), self.target_names,
                                     inputs=batch["inputs"].numpy())]
        self.loaders.evals.clear()
        self.loaders.evals["overfit"] = [batch]

    def model_kwargs(self) -> dict:
        if getattr(self, "_train", None):
            return {"input_shape": self._train[0].sample_shape(),
                    "num_outputs": len(self.target_names)}
        saved = getattr(self, "_saved_kwargs", None)
        if not saved:
            raise InferenceError("the checkpoint holds no model_kwargs/normalisation statistics "
                                 "(written by an older rumpy); continue the run one epoch to "
                                 "get a checkpoint that does")
        return dict(saved)

    def describe(self) -> str:
        return f"{len(self.target_names)} target(s): {', '.join(self.target_names)}"

    def summary_keys(self) -> list[str]:
        keys = ["loss"] + [m.name for m in self.metrics]
        if len(self.target_names) > 1:
            keys += [f"{m.name}-{t}" for m in self.metrics for t in self.target_names]
        return keys

    def per_sample_columns(self) -> list[str]:
        return ["set", "sample"] + [f"{kind}-{t}" for t in self.target_names
                                    for kind in ("true", "pred", "error")]

    # -- batches -------------------------------------------------------------------------------
    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        x = to_float(x) if x.dtype == torch.uint8 else x.float()
        if self.cfg.data.normalize_inputs:
            x = (x - self._in[0]) / self._in[1]
        return x

    def _normalize_targets(self, y: torch.Tensor) -> torch.Tensor:
        """float64 targets -> the model's float32 output space."""
        y = (y - self._out[0]) / self._out[1] if self.cfg.data.normalize_targets else y
        return y.float()

    def to_original(self, pred: torch.Tensor) -> torch.Tensor:
        """Model output -> targets' original units (float64)."""
        pred = pred.double()
        return pred * self._out[1] + self._out[0] if self.cfg.data.normalize_targets else pred

    def _loss(self, pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.cfg.data.loss_space == "original":
            return self.criterion(self.to_original(pred).float(), targets.float())
        return self.criterion(pred, self._normalize_targets(targets))

    def training_loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return self._loss(model(self.model_input(batch["inputs"])), batch["targets"])

    def batch_inputs(self, batch: dict) -> tuple:
        return (self.model_input(batch["inputs"].to(self.device)),)

    # -- evaluation ----------------------------------------------------------------------------
    def _scores(self, pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
        scores = {}
        per_target = {}
        for m in self.metrics:
            values = m(pred, true)
            scores[m.name] = float(values.mean())
            per_target[m.name] = values
        if len(self.target_names) > 1:
            for m in self.metrics:
                for t, value in zip(self.target_names, per_target[m.name].tolist()):
                    scores[f"{m.name}-{t}"] = value
        return scores

    @torch.no_grad()
    def evaluate(self, handler, with_outputs: bool = True) -> EvalResult:
        result = EvalResult(means={})
        dist = self.dist
        for ds in self._evals:
            parts = []  # (batch number, raw output, prediction, truth): each rank every world-th
            for b, batch in enumerate(self.loaders.evals[ds.name]):
                if b % dist.world != dist.rank:
                    continue
                out = handler.infer(self.model_input(batch["inputs"].to(self.device)))
                parts.append((b, out.cpu(), self.to_original(out).cpu(), batch["targets"]))
            if dist.enabled:  # every rank gets all batches, in order: the one-process result
                parts = sorted((p for ranks in dist.gather(parts) for p in ranks),
                               key=lambda p: p[0])
            raw_pred, pred, true = (torch.cat([p[k] for p in parts]).to(self.device)
                                    for k in (1, 2, 3))
            scores = {"loss": float(self._loss(raw_pred, true))}
            scores.update(self._scores(pred, true))
            result.means[ds.name] = scores
            result.per_sample += self._rows(ds, pred.cpu().numpy(), true.cpu().numpy())
            if with_outputs:
                result.outputs[ds.name] = (pred.cpu().numpy(), true.cpu().numpy())
        return result

    def _rows(self, ds: RegressionSet, pred: np.ndarray, true: np.ndarray) -> list[dict]:
        rows = []
        for i, sample in enumerate(ds.ids):
            row = {"set": ds.name, "sample": sample}
            for j, t in enumerate(self.target_names):
                row.update({f"true-{t}": float(true[i, j]), f"pred-{t}": float(pred[i, j]),
                            f"error-{t}": float(pred[i, j] - true[i, j])})
            rows.append(row)
        return rows

    def baseline(self) -> dict[str, dict[str, float]]:
        mean = self.stats["target_mean"].double()
        out = {}
        for ds in self._evals:
            true = torch.tensor(ds.targets, dtype=torch.float64)
            out[ds.name] = self._scores(mean.expand_as(true).clone(), true)
        return out

    def visuals(self, result: EvalResult) -> dict:
        from ..results.scatter import scatter_image

        return {name: [("scatter", scatter_image(pred, true, self.target_names, name))]
                for name, (pred, true) in result.outputs.items()}

    def state_dict(self) -> dict:
        return {"stats": dict(self.stats), "model_kwargs": self.model_kwargs(),
                "target_names": list(self.target_names)}

    def check_resume(self, state: dict) -> None:
        """A continue or fork must see data of the same layout as the checkpoint's model."""
        saved = (state.get("parts", {}).get("task") or {})
        for key, now in (("model_kwargs", self.model_kwargs()), ("target_names", self.target_names)):
            if key in saved and saved[key] != now:
                self.fail("data", f"the data now gives {key.replace('_', ' ')} {now}, the "
                                  f"checkpoint's model was built for {saved[key]}; start a new run")

    def load_state_dict(self, state: dict) -> None:
        """The statistics the checkpoint was trained with (the data may have changed since),
        and (after training) the model's constructor arguments and target names."""
        if state.get("stats"):
            self.stats = {k: v.clone() for k, v in state["stats"].items()}
            self._place_stats()
        if state.get("model_kwargs"):
            self._saved_kwargs = dict(state["model_kwargs"])
        if state.get("target_names") and not getattr(self, "_train", None):
            self.target_names = list(state["target_names"])

    # -- after training ------------------------------------------------------------------------
    def loaded_info(self) -> dict:
        return {"stats": getattr(self, "stats", None), "target_names": list(self.target_names),
                "normalize_inputs": bool(self.cfg.data.normalize_inputs),
                "normalize_targets": bool(self.cfg.data.normalize_targets)}

    def predict(self, infer, inputs):
        return predict_samples(self, infer, inputs)

    def export_network(self, model: nn.Module) -> nn.Module:
        return RegressionNetwork(model, self.stats, bool(self.cfg.data.normalize_inputs),
                                 bool(self.cfg.data.normalize_targets)).eval()

    def export_examples(self, infer):
        return export_examples(self, infer)

    def export_contract(self) -> dict:
        return export_contract(self)
