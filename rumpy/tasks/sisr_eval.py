"""SR validation: per-image metrics on every eval set, the bicubic baseline, and sample images."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from ..data.images import bicubic, bicubic_uint8, quantize, to_float
from ..metrics import Metric
from ..metrics.sr import prepare_pair
from ..core.distributed import SINGLE
from .base import EvalResult


@dataclass
class Sample:
    key: str
    bicubic: torch.Tensor  # 3xHxW uint8, HR size
    sr: torch.Tensor
    hr: torch.Tensor
    psnr: float | None = None  # the image's PSNR by the metric protocol, shown on its strip


def ssim_too_small(sets, scale: int, crop_border: bool, window: int = 11
                   ) -> tuple[str, str] | None:
    """(key path, message) for the first eval image SSIM cannot score (smaller than its window
    once the border is cropped), or None: found before training rather than as 0/0 later."""
    border = scale if crop_border else 0
    for s in sets:
        crop = getattr(s.config, "crop", 0) or 0
        for key, (h, w) in zip(s.keys, s.hr_sizes):
            if crop:
                h, w = min(h, crop * scale), min(w, crop * scale)
            if min(h, w) - 2 * border < window:
                return (f"data.eval_sets.{s.name}",
                        f"image {key} is {w}x{h} HR pixels, {w - 2 * border}x{h - 2 * border} after "
                        f"the {border}-pixel border crop: SSIM needs at least {window}x{window}; "
                        f"drop SSIM from training.metrics or use larger images")
    return None


class Evaluator:
    def __init__(self, metrics: list[Metric], scale: int, channel: str, crop_border: bool,
                 loaders: dict[str, DataLoader], keys: dict[str, list[str]], device: torch.device,
                 num_samples: int, examples: dict[str, set[int]] | None = None,
                 dist=SINGLE, grey: str = "own"):
        self.metrics = metrics
        self.channel = channel
        self.grey = grey
        self.border = scale if crop_border else 0
        self.loaders = loaders
        self.keys = keys
        self.device = device
        self.scale = scale
        self.num_samples = num_samples
        self.examples = examples or {}
        self.dist = dist

    def _score(self, sr_q: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = {}
        prepared = None
        for m in self.metrics:
            if m.protocol:
                if prepared is None:  # luma and crop once, shared by PSNR and SSIM
                    prepared = prepare_pair(sr_q, hr, self.channel, self.border, self.grey)
                scores[m.name] = m(*prepared)
            else:
                scores[m.name] = m(sr_q, hr)
        return scores

    @staticmethod
    def _to_host(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch's per-image scores on the CPU in one transfer (one sync per batch on a
        GPU, not one per metric); as float64, which holds every float32 score exactly."""
        if not scores:
            return {}
        keys = list(scores)
        host = torch.stack([scores[k].reshape(-1).double() for k in keys]).cpu()
        return dict(zip(keys, host))

    @torch.no_grad()
    def _run(self, predict, loss_fn=None, num_samples: int = 0, shard: bool = False) -> EvalResult:
        """Every set's per-image scores, means and samples. `shard`: each data-parallel rank
        scores every world-th batch and the ranks exchange their rows, so every rank ends with
        the one-process result (means summed in image order, bit for bit)."""
        dist = self.dist if shard else SINGLE
        result = EvalResult(means={})
        for set_name, loader in self.loaders.items():
            rows: list[tuple[int, dict]] = []
            samples: list[tuple[int, Sample]] = []
            examples: list[tuple[int, Sample]] = []
            wanted = self.examples.get(set_name, set()) if loss_fn is not None else set()
            for b, batch in enumerate(loader):
                if b % dist.world != dist.rank:
                    continue
                lr, hr, index = batch["lq"], batch["gt"], batch["index"]
                hr_dev = hr.to(self.device, non_blocking=True)
                sr = predict(lr, batch.get("metadata"))
                sr, extra = sr if isinstance(sr, tuple) else (sr, {})  # a model's own scores
                sr_q = quantize(sr)
                scores = {**self._score(sr_q, hr_dev.float()), **extra}
                if loss_fn is not None:
                    hr_f = to_float(hr_dev)
                    scores["loss"] = torch.stack([loss_fn(s[None], h[None]) for s, h in
                                                  zip(sr, hr_f)]).double()
                scores = self._to_host(scores)
                for j, i in enumerate(index.tolist()):
                    row = {"set": set_name, "image": self.keys[set_name][i]}
                    row.update({k: float(v[j]) for k, v in scores.items()})
                    rows.append((i, row))
                    if len(samples) < num_samples or i in wanted:
                        up = quantize(bicubic(to_float(lr[j:j + 1].to(self.device)), hr.shape[-2:]))
                        sample = Sample(self.keys[set_name][i], up[0].byte().cpu(),
                                        sr_q[j].byte().cpu(), hr[j], row.get("PSNR"))
                        if len(samples) < num_samples:
                            samples.append((i, sample))
                        if i in wanted:
                            examples.append((i, sample))
            if dist.enabled:
                parts = dist.gather((rows, samples, examples))
                rows, samples, examples = ([x for part in parts for x in part[k]]
                                           for k in range(3))
            rows.sort(key=lambda x: x[0])
            totals: dict[str, float] = {}
            for _, row in rows:
                result.per_sample.append(row)
                for k, v in row.items():
                    if k not in ("set", "image"):
                        totals[k] = totals.get(k, 0.0) + v
            result.means[set_name] = {k: v / len(rows) for k, v in totals.items()}
            result.outputs[set_name] = [x for _, x in sorted(samples, key=lambda x: x[0])][:num_samples]
            if examples:
                result.examples[set_name] = [x for _, x in sorted(examples, key=lambda x: x[0])]
        return result

    def bicubic_baseline(self) -> EvalResult:
        def upsample(lr: torch.Tensor, metadata=None) -> torch.Tensor:  # MATLAB's bicubic row
            lr = lr.to(self.device)
            return bicubic_uint8(lr, (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale))
        return self._run(upsample)

    def evaluate(self, predict, loss_fn, with_samples: bool = True) -> EvalResult:
        return self._run(predict, loss_fn, self.num_samples if with_samples else 0, shard=True)
