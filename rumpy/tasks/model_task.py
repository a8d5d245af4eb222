"""Task 'model': the model owns its loss and metrics (pixlib's way), for users who keep
everything in their model class. Any dataset kind of the image or regression families feeds it;
the model receives the whole batch dict on the device (uint8 images as floats in [0, 1]) and
declares:

    @MODELS.register("mynet", tasks=("model",))
    class MyNet(nn.Module):
        metric_directions = {"mae": "min", "within_0.1": "max"}   # its metrics and directions
        def forward(self, batch: dict): ...                        # -> prediction (any type)
        def loss(self, pred, batch) -> torch.Tensor: ...           # a scalar
        def metrics(self, pred, batch) -> dict[str, torch.Tensor]: # per sample ([B]) or a scalar

Validation averages the loss and each metric over an eval set's samples; the summary columns are
val-loss and val-<metric>, and best/early stopping follow each metric's declared direction."""
from __future__ import annotations

import torch
from torch import nn

from ..data.arrays import check_arrays_set
from ..data.holdout import hold_out, with_held_out
from ..data.images_with_targets import check_images_set
from ..data.loaders import Loaders
from ..data import paired, regression
from ..models import MODELS
from .base import TASKS, EvalResult, InferenceError, Task

_REGRESSION_KINDS = {"arrays": check_arrays_set, "images_with_targets": check_images_set}


def _module(model: nn.Module) -> nn.Module:
    """The model under a DistributedDataParallel wrapper (its loss and metrics live there)."""
    return getattr(model, "module", model)


@TASKS.register("model")
class ModelTask(Task):
    name = "model"
    families = ("image", "regression")
    dataset_kinds = ("arrays", "images_with_targets", "paired")
    model_inputs = ()
    baseline_name = "none"
    per_sample_file = "per_sample_model"
    model_takes_batch = True
    config_defaults = {
        "training.best_load_metric": "val-loss",
        "training.early_stopping_metric": "val-loss",
    }

    @classmethod
    def model_names(cls) -> list[str]:
        """Only models made for this task (the families share data kinds, not models)."""
        return MODELS.names((cls.name,))

    # -- before anything is written -------------------------------------------------------------
    def check_config(self) -> None:
        super().check_config()
        cls = MODELS.get(self.cfg.model.name, self.scopes())
        missing = [m for m in ("loss", "metrics") if not callable(getattr(cls, m, None))]
        directions = getattr(cls, "metric_directions", None)
        if missing or not isinstance(directions, dict):
            what = ", ".join(missing + ([] if isinstance(directions, dict) else
                                        ["metric_directions (a dict)"]))
            self.fail("model.name", f"{self.cfg.model.name} serves task 'model' but lacks {what}: "
                                    f"a 'model' task's model defines loss(pred, batch), "
                                    f"metrics(pred, batch) and metric_directions")
        bad = {k: v for k, v in directions.items() if v not in ("max", "min") or "-" in k}
        if bad:
            self.fail("model.name", f"{self.cfg.model.name}.metric_directions: expected 'max' or "
                                    f"'min' per metric (names without '-'), got {bad}")
        self.directions = dict(directions)

    def _kind(self) -> str:
        kinds = {ds.type for ds in [*self.cfg.data.training_sets.values(),
                                    *self.cfg.data.eval_sets.values()]}
        if len(kinds) > 1:
            self.fail("data", f"every set needs the same dataset type, got {sorted(kinds)}")
        return kinds.pop() if kinds else "arrays"

    def _check(self, section: str, label: str, ds):
        if ds.type == "paired":
            return paired._check_set(self.cfg, section, label, ds)
        return _REGRESSION_KINDS[ds.type](self.cfg, section, label, ds)

    def check_data(self) -> None:
        cfg = self.cfg
        if self._kind() == "paired":
            self._train, self._evals = paired.check_data(cfg)
            return
        train = [self._check("training_sets", k, v) for k, v in cfg.data.training_sets.items()]
        evals = [self._check("eval_sets", k, v) for k, v in cfg.data.eval_sets.items()]
        self._train, self._evals = hold_out(cfg, train, evals, list(cfg.data.training_sets))
        regression.check_consistent(cfg, self._train, self._evals)

    def training_samples(self) -> dict[str, int]:
        return {s.name: len(s) * s.config.repeat for s in self._train}

    def setup(self, device: torch.device, stage: str = "fit", held_out: bool = False) -> Loaders:
        cfg, pin = self.cfg, device.type == "cuda"
        self.device = device
        is_paired = self._kind() == "paired"
        if stage == "fit":
            build = paired.build_loaders if is_paired else regression.build_loaders
            self.loaders = build(cfg, self._train, self._evals, pin)
            return self.loaders
        if stage == "evaluate" and is_paired:
            self._evals = paired.check_eval_sets(cfg, held_out)
            evals = paired.build_eval_loaders(cfg, self._evals, pin)
        elif stage == "evaluate":
            self._evals = [self._check("eval_sets", k, v) for k, v in cfg.data.eval_sets.items()]
            if held_out:
                self._evals = with_held_out(cfg, lambda c, s, k, v: self._check(s, k, v),
                                            self._evals)
            evals = regression.eval_loaders(cfg, self._evals, pin)
        else:
            self._evals, evals = [], {}
        self.loaders = Loaders(None, None, evals)
        return self.loaders

    def eval_order(self) -> list[tuple[str, list[str]]]:
        return [(s.name, list(getattr(s, "keys", None) or s.ids)) for s in self._evals]

    def model_kwargs(self) -> dict:
        return {}

    def summary_keys(self) -> list[str]:
        return ["loss", *self.directions]

    def per_sample_columns(self) -> list[str]:
        return ["set", "sample", *self.directions]

    def column_directions(self) -> dict[str, str]:
        return dict(self.directions)

    # -- batches ---------------------------------------------------------------------------------
    def prepare(self, batch: dict) -> dict:
        """The batch on the device, uint8 images as floats in [0, 1]."""
        out = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, non_blocking=True)
                if value.dtype == torch.uint8:
                    value = value.float() / 255.0
            out[key] = value
        return out

    def batch_inputs(self, batch: dict) -> tuple:
        return (self.prepare(batch),)

    def training_loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        batch = self.prepare(batch)
        return _module(model).loss(model(batch), batch)

    @torch.no_grad()
    def evaluate(self, handler, with_outputs: bool = True) -> EvalResult:
        model = getattr(handler, "eval_model", handler.model)  # the EMA weights when kept
        model.eval()
        core = _module(model)
        result = EvalResult(means={})
        for name, ids in self.eval_order():
            totals: dict[str, float] = {}
            count = 0
            for batch in self.loaders.evals[name]:
                batch = self.prepare(batch)
                pred = model(batch)
                size = len(batch["index"])
                scores = {"loss": core.loss(pred, batch), **core.metrics(pred, batch)}
                row_values = {}
                for key, value in scores.items():
                    value = torch.as_tensor(value).detach().double().cpu()
                    if key != "loss" and key not in self.directions:
                        raise ValueError(f"{self.cfg.model.name}.metrics returned {key!r}, which "
                                         f"metric_directions does not declare")
                    per_sample = value.numel() == size and value.dim() == 1
                    totals[key] = totals.get(key, 0.0) + float(value.sum() if per_sample
                                                               else value * size)
                    if per_sample and key != "loss":
                        row_values[key] = value.tolist()
                for j, i in enumerate(batch["index"].tolist()):
                    result.per_sample.append({"set": name, "sample": ids[i],
                                              **{k: v[j] for k, v in row_values.items()}})
                count += size
            result.means[name] = {k: v / count for k, v in totals.items()}
        return result

    def baseline(self) -> dict[str, dict[str, float]]:
        return {name: {} for name in self.loaders.evals}

    # -- after training ------------------------------------------------------------------------
    def predict(self, infer, inputs):
        """`inputs`: a batch dict as the data sets give it; returns the model's prediction."""
        if not isinstance(inputs, dict):
            raise InferenceError("a 'model' task's model takes a batch dict ({name: tensor})")
        return infer(self.prepare(inputs))

    def export_examples(self, infer):
        raise InferenceError("export-model needs a tensor-in, tensor-out network; a 'model' "
                             "task's model takes a batch dict (export it with your own code "
                             "from load_experiment)")
