"""DAN for the sisr task (`[model] name = "dan"`, models/dan.py): the restorer and the kernel
estimator are one network with one optimizer, as in the paper and the original tool. One
iteration:

    srs, codes = model(lr, all_iterations=True)     # `loop` alternations from a delta kernel
    loss = criterion(srs[-1], hr) + L1(codes[-1], the image's metadata)

Only the last alternation carries gradients to both networks: each sees the other's output
detached, and the weights are shared across alternations (the original DANHandler's loss). The
target is the training sets' `metadata` vector (blur_kernel: the kernel's normalised PCA code),
so the estimator learns exactly what a conditioned model (qrcan) would be given. Validation is
blind (no metadata reaches the network); an eval set with metadata also scores the estimator:
`estimator-error`, the mean absolute error of the final code, per image and per set.

Mode v2 (the original's DANv2): the estimator predicts the full kernel and is trained on each
image's full kernel (metadata = ["blur_kernel"] alone, delivered as the kernel itself: the blur
step's kernel rebuilt from the CSV's recorded parameters, or the one applied online;
data/metadata.full_kernels); its loss is the L1 between the last iteration's kernel and it, as
the original's DANHandler (whose loop keeps the last iteration's terms). The restorer is
conditioned on the kernel's projection by the training data's PCA matrix (`encoder`, without
the mean or the [0, 1] normalisation of v1's codes, as the original's pca_matrix), and
`estimator-error` is the final kernel's mean absolute error."""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..config import ConfigError
from ..data.images import to_float
from ..data.metadata import KERNEL, kernel_basis
from ..models.dan import MODES, NOT_BUILT

IP = "model.internal_params"
ERROR = "estimator-error"  # the eval column: lower is better


class DANStep:
    def __init__(self, task):
        self.task = task
        if task.cfg.model.discriminator is not None:
            task.fail("model.discriminator", "adversarial training is not available with dan")
        arch = task.cfg.model.internal_params.arch
        mode = arch.get("mode", "v1")
        if mode in NOT_BUILT:
            task.fail(f"{IP}.mode", f"{mode!r} is not available: {NOT_BUILT[mode]} (modes: "
                                    f"{', '.join(MODES)})")
        if mode not in MODES:
            task.fail(f"{IP}.mode", f"expected one of {', '.join(MODES)}, got {mode!r}")
        flags, groups = arch.get("selective_meta_blocks", []), arch.get("n_resgroups", 10)
        if mode not in ("v1", "v2") and flags and len(flags) != groups:
            task.fail(f"{IP}.selective_meta_blocks", f"expected one flag per residual group "
                                                     f"(n_resgroups = {groups}), got {len(flags)}")

    def terms(self) -> list[str]:
        return ["loss-sr", "loss-estimator"]

    def check_data(self, train_sets: list, eval_sets: list) -> None:
        """The estimator's target is the training sets' metadata: every training set gives it,
        eval sets give the same or none (then they are scored on SR alone)."""
        cfg = self.task.cfg
        first = next(iter(cfg.data.training_sets))
        wanted = list(getattr(cfg.data.training_sets[first], "metadata", []) or [])
        if not wanted:
            raise ConfigError(cfg.source, f"data.training_sets.{first}.metadata",
                              "dan's estimator learns the degradation from each image's "
                              "metadata: give metadata = [\"blur_kernel\"] and "
                              "degradation_metadata = \"on_site\" (or the CSV's path)")
        for s in train_sets + eval_sets:
            given = list(getattr(s.config, "metadata", []) or [])
            if (s in train_sets or given) and given != wanted:
                section = "training_sets" if s in train_sets else "eval_sets"
                raise ConfigError(cfg.source, f"data.{section}.{s.name}.metadata",
                                  f"set {s.name} gives {given}, the estimator learns {wanted} "
                                  f"(every set the same, in the same order; an eval set may "
                                  f"give none)")
        mode = cfg.model.internal_params.arch.get("mode", "v1")
        if mode == "v2" and wanted != [KERNEL]:
            raise ConfigError(cfg.source, f"data.training_sets.{first}.metadata",
                              f"mode 'v2' trains its estimator on each image's full blur kernel: "
                              f"give metadata = [\"blur_kernel\"] alone (a Gaussian or "
                              f"Real-ESRGAN blur step's kernel, rebuilt from the recorded "
                              f"parameters), got {wanted}")
        self.mode = mode
        self.wanted = wanted
        self.basis = None
        if KERNEL in wanted:
            where = f"data.training_sets.{first}"
            self.basis = kernel_basis(cfg, where, cfg.data.training_sets[first])
            size = cfg.model.internal_params.arch.get("kernel_size", 21)
            if self.basis.kernel_size != size:
                raise ConfigError(cfg.source, f"{IP}.kernel_size",
                                  f"the training data's blur kernels are {self.basis.kernel_size}x"
                                  f"{self.basis.kernel_size} (its kernel PCA), the model's "
                                  f"encoder is for {size}x{size}: set kernel_size = "
                                  f"{self.basis.kernel_size}")

    def prime(self, model) -> None:
        """The PCA encoder and the starting code from the training data's basis: a delta
        kernel's normalised code (0.5 for the other metadata values, and everywhere without the
        PCA encoder, as the original's use_pca_encoder = false)."""
        basis = getattr(self, "basis", None)
        if basis is not None and getattr(self, "mode", None) == "v2":
            # the original's DANv2: the PCA matrix alone (use_pca_encoder does not apply), the
            # starting code the delta kernel's projection
            encoder = torch.from_numpy(basis.components.T.astype(np.float32))
            with torch.no_grad():
                model.encoder[0] = encoder
                model.init_ker_map[0] = model.init_kernel.reshape(-1) @ encoder
            return
        if basis is None or not model.use_pca_encoder:
            return
        start = len(self.wanted[:self.wanted.index(KERNEL)])
        span = slice(start, start + basis.pca_length)
        delta = model.init_kernel[0].double().numpy()
        code = basis.normalise(basis.encode(delta[None]))[0]
        with torch.no_grad():
            model.encoder[0, :, span] = torch.from_numpy(basis.components.T.astype(np.float32))
            model.init_ker_map[0, span] = torch.from_numpy(code.astype(np.float32))

    def __call__(self, handler, batch: dict) -> torch.Tensor:
        task = self.task
        lq = task.model_input(batch["lq"])
        gt = to_float(batch["gt"])
        target = batch["metadata"].to(task.device, non_blocking=True).float()
        with handler.autocast():
            # codes (v1 modes) or full kernels (v2), as the target
            srs, estimates = handler.train_model(lq, True)
            loss_sr = task.criterion(srs[-1], gt)
            loss_estimator = F.l1_loss(estimates[-1].float(), target)
            loss = loss_sr + loss_estimator
        handler.optimize(loss)
        handler.record("loss-sr", loss_sr)
        handler.record("loss-estimator", loss_estimator)
        return loss

    def predictor(self, handler):
        """Validation's forward pass: blind SR, and the estimator's error where the batch has
        the true metadata (the code of the pass that made the SR image)."""
        task = self.task
        model = getattr(handler, "eval_model", None)
        model = handler.model if model is None else model

        def predict(lr, meta=None):
            sr = handler.infer(task.model_input(lr))
            if meta is None or model.last_estimate is None:
                return sr
            estimate = model.last_estimate.float()
            error = (estimate - meta.to(estimate.device).float()).abs().mean(dim=1)
            return sr, {ERROR: error}
        return predict
