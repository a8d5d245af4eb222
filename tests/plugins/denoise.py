"""A third task as a user would add it, in one plugin file and nothing else: image denoising on
`paired` noisy/clean folders (same size), scored with the package's PSNR and SSIM (registered
for the "image" family, which this task joins), with its own model and its own 'noisy input'
baseline. The test suite trains, continues, forks, evaluates, predicts and exports it through
the public CLI (tests/test_plugins.py)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rumpy.data.datasets import to_tensor
from rumpy.data.images import quantize, to_float
from rumpy.data.loaders import Loaders
from rumpy.data.paired import build_eval_loaders, build_loaders, check_data, check_eval_sets
from rumpy.metrics.sr import prepare
from rumpy.models import MODELS
from rumpy.tasks import TASKS, EvalResult, Task
from rumpy.core.losses import build_loss


@MODELS.register("tiny_dncnn", tasks=("denoise",))
class TinyDnCNN(nn.Module):
    """DnCNN's shape, tiny: a residual CNN predicting the noise, subtracted from the input."""

    def __init__(self, features: int = 8, depth: int = 3):
        super().__init__()
        layers = [nn.Conv2d(3, features, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(features, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


@TASKS.register("denoise")
class DenoiseTask(Task):
    name = "denoise"
    families = ("image",)          # PSNR, SSIM and the `paired` kind serve image tasks
    dataset_kinds = ("paired",)
    model_inputs = ()
    baseline_name = "noisy input"
    per_sample_file = "per_image_denoised"
    sample_unit = "images"
    image_outputs = True
    config_defaults = {
        "training.metrics": ["PSNR", "SSIM"],
        "training.metric_channel": "rgb",
        "training.best_load_metric": "val-PSNR",
        "training.early_stopping_metric": "val-PSNR",
        "model.internal_params.loss": "l1",
    }

    # -- before anything is written ---------------------------------------------------------
    def check_data(self) -> None:
        self._train, self._evals = check_data(self.cfg)

    def training_samples(self) -> dict[str, int]:
        return {s.name: len(s.keys) * s.config.repeat for s in self._train}

    def setup(self, device, stage="fit", held_out=False) -> Loaders:
        self.device = device
        self.metrics = self.build_metrics(device)
        self.criterion = build_loss(self.cfg.model.internal_params.loss).to(device)
        if stage == "fit":
            self.loaders = build_loaders(self.cfg, self._train, self._evals, False)
        else:
            self._evals = check_eval_sets(self.cfg, held_out) if stage == "evaluate" else []
            self.loaders = Loaders(None, None, build_eval_loaders(self.cfg, self._evals, False))
        return self.loaders

    def eval_order(self):
        return [(s.name, s.keys) for s in self._evals]

    def model_kwargs(self) -> dict:
        return {}

    def summary_keys(self) -> list[str]:
        return ["loss"] + [m.name for m in self.metrics]

    def per_sample_columns(self) -> list[str]:
        return ["set", "image"] + self.summary_keys()

    # -- training -----------------------------------------------------------------------------
    def model_input(self, noisy: torch.Tensor) -> torch.Tensor:
        return to_float(noisy.to(self.device))

    def training_loss(self, model, batch):
        return self.criterion(model(self.model_input(batch["lq"])),
                              to_float(batch["gt"].to(self.device)))

    def _scores(self, out: torch.Tensor, clean: torch.Tensor) -> dict[str, torch.Tensor]:
        a = prepare(quantize(out), "rgb", 0)
        b = prepare(clean.float(), "rgb", 0)
        return {m.name: m(a, b).cpu() for m in self.metrics}

    @torch.no_grad()
    def _run(self, predict, with_loss: bool) -> EvalResult:
        result = EvalResult(means={})
        for name, keys in self.eval_order():
            rows = []
            for batch in self.loaders.evals[name]:
                clean = batch["gt"].to(self.device)
                out = predict(batch["lq"])
                scores = self._scores(out, clean)
                if with_loss:
                    scores["loss"] = torch.stack([self.criterion(o[None], c[None]) for o, c in
                                                  zip(out, to_float(clean))]).double().cpu()
                for j, i in enumerate(batch["index"].tolist()):
                    rows.append({"set": name, "image": keys[i],
                                 **{k: float(v[j]) for k, v in scores.items()}})
            result.per_sample += rows
            result.means[name] = {k: sum(r[k] for r in rows) / len(rows)
                                  for k in rows[0] if k not in ("set", "image")}
        return result

    def evaluate(self, handler, with_outputs: bool = True) -> EvalResult:
        return self._run(lambda noisy: handler.infer(self.model_input(noisy)), True)

    def baseline(self):
        return self._run(self.model_input, False).means

    # -- after training -----------------------------------------------------------------------
    def predict(self, infer, inputs):
        single = isinstance(inputs, np.ndarray) and inputs.ndim == 3
        outs = [quantize(infer(self.model_input(to_tensor(np.asarray(x))[None])))[0]
                .byte().permute(1, 2, 0).cpu().numpy() for x in ([inputs] if single else inputs)]
        return outs[0] if single else outs

    def export_examples(self, infer):
        from skimage import data

        x = to_float(to_tensor(np.ascontiguousarray(data.astronaut()[:24, :20]))[None])
        return [(x, infer(x))], "scikit-image astronaut (crop)"

    def export_contract(self) -> dict:
        return {"names": ("noisy", "denoised"),
                "dynamic_dims": {0: "batch", 2: "height", 3: "width"},
                "input": {"name": "noisy", "layout": "NCHW", "range": [0.0, 1.0]},
                "output": {"name": "denoised", "layout": "NCHW", "range": [0.0, 1.0]}}
