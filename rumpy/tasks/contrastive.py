"""Task 'contrastive': a degradation encoder trained contrastively (the original tool's SupMoCo,
MoCo and WeakCon, models/contrastive.py) on online degradations of HR crops.

Batches are {"lq": B x P x 3 x c x c uint8, "label", "vector"}: P = `request_crops` crops of one
image, all with one degradation (data/contrastive.py). The first crop of each image is the
query, the other P - 1 its positives (`crop_count` = P, as the original); SupMoCo also counts the
queued keys of the query's degradation class as positives, WeakCon weights the negatives by the
distance between degradation vectors. The loss is the cross-entropy of the positives' logit
among [positives, queue]. The momentum encoder, the queue and its pointer and classes are
buffers of the model, so they are in every checkpoint: a continue or a fork resumes them exactly.

Evaluation (the original's contrastive_model_eval, scored): each eval set's LR images are encoded
by the query encoder (the 256-value embedding a blind SR model is conditioned on), labelled with
the training classes from their degradation_metadata, and scored by `knn_accuracy`, the share of
images whose nearest other image (cosine similarity) has their class. Per image the rows of
result_outputs/encodings_epoch_<N>.csv hold its class, whether its neighbour agreed and the
embedding's first two principal components (`pc1`, `pc2`, over the set: a map of the encoder's
space), and a scatter image of them per set is saved with the sample images. The baseline is a
random neighbour's chance of sharing the class. Best epoch: `train-loss` by default (the
original's `best_load_metric = 'train-loss'`)."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ..data.contrastive import (ContrastiveCrops, Labeller, check_eval_set, eval_loaders,
                                nearest_neighbour_hits, plan_labels)
from ..data.datasets import to_tensor
from ..data.images import to_float
from ..data.loaders import Loaders, train_loader
from ..data.paired import _check_set, _load
from ..models import MODELS
from ..models.contrastive import DATA_TYPES
from .base import IP, TASKS, EvalResult, InferenceError, Task
from .sisr_infer import as_rgb, check_image, is_single

METRIC = "knn_accuracy"


class EncoderNetwork(nn.Module):
    """The exported encoder: an LR image in [0, 1] -> its 256-value degradation embedding."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]


@TASKS.register("contrastive")
class ContrastiveTask(Task):
    name = "contrastive"
    families = ("image",)           # reads `paired` sets (hr + degradations; eval: lr + CSV)
    dataset_kinds = ("paired",)
    model_inputs = ("num_classes", "vector_size")
    baseline_name = "random neighbour"
    per_sample_file = "encodings"
    config_defaults = {
        "training.best_load_metric": "train-loss",
        "training.early_stopping_metric": "train-loss",
        "training.num_samples": 3,
        "model.internal_params.scale": None,   # the pipeline's downsample scale
    }

    @classmethod
    def model_names(cls) -> list[str]:
        return MODELS.names((cls.name,))

    # -- before anything is written -------------------------------------------------------------
    def check_config(self) -> None:
        super().check_config()
        cfg = self.cfg
        arch = cfg.model.internal_params.arch
        self.model_cls = MODELS.get(cfg.model.name, self.scopes())
        self.crop_count = int(arch.get("crop_count", 2))
        for label, ds in cfg.data.training_sets.items():
            where = f"data.training_sets.{label}"
            if not ds.degradations:
                self.fail(f"{where}.degradations",
                          "an encoder learns from degradations applied on the fly: give hr and a "
                          "degradations pipeline (the original's online_degradations = true with "
                          "[data.online_pipeline])")
            if ds.request_crops != self.crop_count:
                self.fail(f"{where}.request_crops",
                          f"expected {self.crop_count} (the model's crop_count: a query crop and "
                          f"{self.crop_count - 1} positives per image), got {ds.request_crops}")
        queue = int(arch.get("queue_size", 8192))
        if queue % cfg.data.batch_size:
            self.fail("data.batch_size", f"{cfg.data.batch_size} does not divide the queue "
                                         f"({queue} keys): each step enqueues one key per image")
        if cfg.model.internal_params.scale is None:
            cfg.model.internal_params.scale = self._pipeline_scale()

    def _pipeline_scale(self) -> int:
        """The downsample step's scale in the first training set's pipeline (4 by default, as
        rumpy degrade's)."""
        for ds in self.cfg.data.training_sets.values():
            table = ds.degradations or {}
            for entry in table.get("pipeline", []):
                if isinstance(entry, list) and len(entry) == 2 and entry[0] == "downsample":
                    options = (table.get("deg_configs") or {}).get(entry[1]) or {}
                    scale = options.get("scale", 4) if isinstance(options, dict) else 4
                    return scale if isinstance(scale, int) and scale >= 1 else 4
        return 4

    def _families(self) -> tuple[list[str], str]:
        arch = self.cfg.model.internal_params.arch
        data_type = arch.get("data_type", list(DATA_TYPES))
        return list(data_type), arch.get("labelling_strategy", "default")

    def check_data(self) -> None:
        cfg = self.cfg
        self._train = [_check_set(cfg, "training_sets", k, v)
                       for k, v in cfg.data.training_sets.items()]
        crops = {s.config.crop for s in self._train}
        if len(crops) > 1:
            self.fail("data.training_sets", f"every training set needs the same crop (patches "
                                            f"share a batch), got {sorted(crops)}")
        data_type, strategy = self._families()
        explicit = "data_type" in inspect.signature(self.model_cls.__init__).parameters
        labellers = []
        for s in self._train:
            steps = s.online.steps
            wanted = data_type if explicit else [
                f for f in DATA_TYPES if _has_family(steps, f)]  # MoCo: every family there is
            try:
                labellers.append(plan_labels(steps, wanted, strategy))
            except ValueError as exc:
                self.fail(f"{IP}.data_type" if explicit else
                          f"data.training_sets.{s.name}.degradations", str(exc))
        if any(l.state() != labellers[0].state() for l in labellers):
            self.fail("data.training_sets", "every training set's pipeline must give the same "
                                            "degradation families and ranges (the classes mean "
                                            "the same in every set)")
        self.labeller = labellers[0]
        self._evals = [check_eval_set(cfg, k, v, self.labeller)
                       for k, v in cfg.data.eval_sets.items()]

    def training_samples(self) -> dict[str, int]:
        return {s.name: len(s.keys) * s.config.repeat for s in self._train}

    def setup(self, device: torch.device, stage: str = "fit", held_out: bool = False) -> Loaders:
        cfg, pin = self.cfg, device.type == "cuda"
        self.device = device
        if stage == "fit":
            sets = [_load(cfg, s) for s in self._train]
            dataset = ContrastiveCrops(
                sets, self._train[0].config.crop,
                [s.config.random_augment and (s.config.use_hflip, s.config.use_vflip,
                                              s.config.use_rotation) for s in self._train],
                [s.config.repeat for s in self._train], cfg.training.seed, self.crop_count,
                self.labeller)
            loader, sampler = train_loader(cfg, dataset, pin)
            self.loaders = Loaders(loader, sampler, eval_loaders(cfg, self._evals,
                                                                 self.labeller, pin))
            return self.loaders
        if stage == "evaluate":
            self._evals = [check_eval_set(cfg, k, v, self.labeller)
                           for k, v in cfg.data.eval_sets.items()]
        else:
            self._evals = []
        self.loaders = Loaders(None, None, eval_loaders(cfg, self._evals, self.labeller, pin))
        return self.loaders

    def eval_order(self) -> list[tuple[str, list[str]]]:
        return [(s.name, s.keys) for s in self._evals]

    def model_kwargs(self) -> dict:
        supplied = {"num_classes": self.labeller.num_classes,
                    "vector_size": self.labeller.vector_size}
        params = inspect.signature(MODELS.get(self.cfg.model.name, self.scopes()).__init__)
        return {k: v for k, v in supplied.items() if k in params.parameters}

    def describe(self) -> str:
        families = ", ".join(self.labeller.families) or "no degradation classes"
        return f"{families}; {self.labeller.num_classes} classes"

    def summary_keys(self) -> list[str]:
        return [METRIC]

    def per_sample_columns(self) -> list[str]:
        return ["set", "image", "label", "neighbour_agrees", "pc1", "pc2"]

    def column_directions(self) -> dict[str, str]:
        return {METRIC: "max"}

    def state_dict(self) -> dict:
        return {"labeller": self.labeller.state()}

    def load_state_dict(self, state: dict) -> None:
        if "labeller" in state:
            self.labeller = Labeller.from_state(state["labeller"])

    def check_resume(self, state: dict) -> None:
        saved = (state.get("parts", {}).get("task") or {}).get("labeller")
        if saved is not None and saved != self.labeller.state():
            self.fail(f"{IP}.data_type", "the node was trained with other degradation classes "
                                         f"({saved['families']}, {saved['strategy']}); the queue's "
                                         f"labels would mean something else: start a new run")

    # -- training ------------------------------------------------------------------------------
    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        return to_float(x.to(self.device, non_blocking=True))

    def training_loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        crops = self.model_input(batch["lq"])              # B x P x 3 x c x c
        queries, keys = crops[:, 0], crops[:, 1:].flatten(0, 1)
        needs = getattr(self.model_cls, "needs", None)
        targets = None if needs is None else batch["label" if needs == "labels" else
                                                   "vector"].to(self.device)
        logits = model(queries, keys, targets)
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long,
                                                   device=logits.device))

    def batch_inputs(self, batch: dict) -> tuple:
        return (self.model_input(batch["lq"]),)

    @torch.no_grad()
    def evaluate(self, handler, with_outputs: bool = True) -> EvalResult:
        result = EvalResult(means={})
        for name, keys in self.eval_order():
            embeddings, labels, order = [], [], []
            for batch in self.loaders.evals[name]:
                embeddings.append(handler.infer(self.model_input(batch["lq"])).double().cpu())
                labels.append(batch["label"])
                order += batch["index"].tolist()
            e, y = torch.cat(embeddings), torch.cat(labels)
            hits = nearest_neighbour_hits(e, y)
            centred = e - e.mean(0)
            _, _, v = torch.linalg.svd(centred, full_matrices=False)
            pcs = centred @ v[:2].T if v.shape[0] >= 2 else torch.zeros(len(e), 2)
            rows = sorted(zip(order, y.tolist(), hits.tolist(), pcs.tolist()))
            for i, label, hit, (pc1, pc2) in rows:
                result.per_sample.append({"set": name, "image": keys[i], "label": label,
                                          "neighbour_agrees": int(hit), "pc1": pc1, "pc2": pc2})
            result.means[name] = {METRIC: float(hits.mean())}
            if with_outputs:
                result.outputs[name] = [(label, pc1, pc2) for _, label, _, (pc1, pc2) in rows]
        return result

    def baseline(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, loader in self.loaders.evals.items():
            labels = np.asarray(loader.dataset.labels)
            _, counts = np.unique(labels, return_counts=True)
            n = len(labels)
            # a random other image's chance of sharing the class (leave-one-out, as the metric)
            out[name] = {METRIC: float((counts * (counts - 1)).sum() / (n * (n - 1)))}
        return out

    def visuals(self, result: EvalResult) -> dict:
        return {name: [("encodings_pca", _scatter(name, points))]
                for name, points in result.outputs.items() if points}

    # -- after training ------------------------------------------------------------------------
    sample_unit = "images"

    def predict(self, infer, inputs):
        """An image (path or uint8 array) -> its embedding (256 values); a list -> N x 256."""
        single = is_single(inputs)
        items = [inputs] if single else list(inputs)
        out = [infer(self.model_input(to_tensor(as_rgb(x, f"image {i}"))[None]))[0].cpu().numpy()
               for i, x in enumerate(items)]
        return out[0] if single else np.stack(out)

    def export_network(self, model: nn.Module) -> nn.Module:
        return EncoderNetwork(model.encoder_q).eval()

    def export_examples(self, infer):
        img, source = check_image(self.cfg)
        h, w = img.shape[:2]
        pairs = []
        for crop in (img, np.ascontiguousarray(img[: max(8, h * 3 // 4), : max(8, w * 2 // 3)])):
            lr = torch.from_numpy(crop).permute(2, 0, 1)[None]
            pairs.append((to_float(lr.clone()), infer(self.model_input(lr))))
        return pairs, source

    def export_contract(self) -> dict:
        return {
            "names": ("lr", "embedding"),
            "dynamic_dims": {0: "batch", 2: "height", 3: "width"},
            "input": {"name": "lr", "layout": "NCHW", "channels": 3, "color": "RGB",
                      "dtype": "float32", "range": [0.0, 1.0],
                      "meaning": "a degraded image's 8-bit values / 255",
                      "dynamic": ["batch", "height", "width"]},
            "output": {"name": "embedding", "layout": "NC", "channels": 256, "dtype": "float32",
                       "meaning": "the degradation embedding (the query encoder's pooled "
                                  "features, what ContrastiveBlindQRCAN is conditioned on)"},
            "description": ["degradation encoder: image -> 256-value embedding"],
        }

    def check_inference(self, what: str, tile: int | None = None, ensemble: bool = False,
                        extra: bool = False) -> None:
        if tile or ensemble:
            raise InferenceError("tiling and self-ensemble are not available for an encoder "
                                 "(its embedding pools the whole image)")


def _has_family(steps: list, family: str) -> bool:
    from ..data.contrastive import FAMILIES
    return any(s.name in FAMILIES[family] for s in steps)


def _scatter(name: str, points: list[tuple[int, float, float]]) -> Image.Image:
    """The embeddings' first two principal components, one dot per image coloured by its
    degradation class: classes an encoder separates form separate clusters."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..results.scatter import figure_image

    labels = np.array([p[0] for p in points])
    fig, ax = plt.subplots(figsize=(5, 4.2))
    dots = ax.scatter([p[1] for p in points], [p[2] for p in points], c=labels, s=14,
                      cmap="viridis", alpha=0.8)
    fig.colorbar(dots, ax=ax, label="degradation class")
    ax.set_title(f"{name}: encodings ({len(points)} images, {len(set(labels.tolist()))} classes)")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.grid(alpha=0.3)
    return figure_image(fig)
