"""Contrastive degradation encoders (task 'contrastive', tasks/contrastive.py) and the blind SR
model conditioned on one (`contrastiveblindqrcan`, task 'sisr').

The encoder is DASR's (Wang et al. 2021) as the original tool builds it: six 3x3 convolutions with
batch norm and LeakyReLU, two of stride 2, average-pooled to a 256-value degradation embedding,
then a two-layer MLP to the 256-value vector the contrastive loss compares. The contrastive
models keep two copies, a query encoder trained by gradient and a key encoder that follows it by
momentum, and a queue of past keys (MoCo, He et al. 2020):

- `mococontrastive` (MoCo): the other crops of the same image are the positives, the queue the
  negatives.
- `supmoco` (SupMoCo, Majumder et al. 2021): every key with the query's degradation class is a
  positive, in the batch and in the queue (the queue keeps each key's class).
- `weakcon` (WeakCon, Zhang et al. 2022): MoCo's positives; each negative's similarity is
  weighted by the distance between the two degradations' parameter vectors.

In training `forward(queries, keys, labels)` returns the logits whose target is column 0 (the
positives) and advances the momentum encoder and the queue; the encoder, queue and pointer are
buffers of the module, so a checkpoint holds them and a continue resumes them exactly. In eval
mode `forward(images)` is the query encoder's embedding. Module and buffer names are the original
tool's (`encoder_q.E.0.weight`, `encoder_q.mlp.0.weight`, `queue`, `queue_ptr`, `queue_labels`,
`queue_vectors`), so its checkpoints load."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..limits import count, number
from .dan import QRCANRestorer
from .registry import MODELS

EMBEDDING = 256          # the encoder's embedding and contrastive vector widths (the original's)
ENCODER_NAMES = ("default",)   # the original's DASR encoder; torchvision models are not ported
LABELLING = ("default", "double_precision", "triple_precision")
DATA_TYPES = ("blur", "noise", "compression")


class Encoder(nn.Module):
    """DASR's degradation encoder: (embedding B x 256, contrastive vector B x 256)."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        widths = [(3, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2),
                  (256, 256, 1)]
        for cin, cout, stride in widths:
            layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout),
                       nn.LeakyReLU(0.1, True)]
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.E = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(EMBEDDING, EMBEDDING), nn.LeakyReLU(0.1, True),
                                 nn.Linear(EMBEDDING, EMBEDDING))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.E(x).flatten(1)
        return embedding, self.mlp(embedding)


def _check_common(model_name: str, crop_count: int, queue_size: int) -> None:
    if model_name not in ENCODER_NAMES:
        raise ValueError(f"model_name: only 'default' (DASR's encoder) is available, got "
                         f"{model_name!r} (the original's torchvision encoders are not ported)")
    if crop_count < 2:
        raise ValueError(f"crop_count: expected at least 2 (a query crop and a positive), got "
                         f"{crop_count}")
    if queue_size < 1:
        raise ValueError(f"queue_size: expected at least 1, got {queue_size}")


class MomentumContrast(nn.Module):
    """The machinery the three share: query and momentum key encoders, the key queue."""

    needs: str | None = None   # what the task supplies per image: 'labels', 'vectors' or None

    def __init__(self, crop_count: int, moco_t: float, queue_size: int, momentum: float,
                 model_name: str):
        super().__init__()
        _check_common(model_name, crop_count, queue_size)
        self.positives = crop_count - 1
        self.T, self.m, self.K = moco_t, momentum, queue_size
        self.encoder_q = Encoder()
        self.encoder_k = Encoder()
        for q, k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            k.data.copy_(q.data)
            k.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(EMBEDDING, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_step(self) -> None:
        for q, k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            k.data = k.data * self.m + q.data * (1.0 - self.m)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor, **extra: torch.Tensor) -> None:
        n = keys.shape[0]
        ptr = int(self.queue_ptr)
        if self.K % n:
            raise ValueError(f"queue_size {self.K} is not a multiple of the batch size {n}")
        self.queue[:, ptr:ptr + n] = keys.T
        for name, values in extra.items():
            getattr(self, name)[..., ptr:ptr + n] = values
        self.queue_ptr[0] = (ptr + n) % self.K

    def _queries_and_keys(self, im_q: torch.Tensor, im_k: torch.Tensor):
        _, q = self.encoder_q(im_q)
        q = F.normalize(q, dim=1)
        with torch.no_grad():
            self._momentum_step()
            _, k = self.encoder_k(im_k)
            k = F.normalize(k, dim=1)
        # N x P x C: each query's positives (the other crops of its image)
        return q, k, k.reshape(q.shape[0], self.positives, -1)

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None = None,
                targets: torch.Tensor | None = None) -> torch.Tensor:
        if keys is None:
            return self.encoder_q(x)[0]
        return self.contrast(x, keys, targets)

    def contrast(self, im_q, im_k, targets) -> torch.Tensor:
        raise NotImplementedError


@MODELS.register("mococontrastive", tasks=("contrastive",), limits={
    "crop_count": count(2), "queue_size": count(1), "moco_t": number(above=0),
    "momentum": number(0, 1)})
class MoCo(MomentumContrast):
    """MoCo with several positives: the logit of the positives is their mean similarity."""

    def __init__(self, crop_count: int = 2, moco_t: float = 0.07, queue_size: int = 8192,
                 momentum: float = 0.999, model_name: str = "default"):
        super().__init__(crop_count, moco_t, queue_size, momentum, model_name)

    def contrast(self, im_q, im_k, targets=None) -> torch.Tensor:
        q, k, per_query = self._queries_and_keys(im_q, im_k)
        if self.positives == 1:
            l_pos = (q * k).sum(1, keepdim=True) / self.T
        else:
            l_pos = ((q[:, None] * per_query).sum(2) / self.T).mean(1, keepdim=True)
        l_neg = q @ self.queue.clone() / self.T
        self._enqueue(per_query[:, 0])
        return torch.cat([l_pos, l_neg], dim=1)


@MODELS.register("supmoco", tasks=("contrastive",), limits={
    "crop_count": count(2), "queue_size": count(1), "moco_t": number(above=0),
    "momentum": number(0, 1)})
class SupMoCo(MomentumContrast):
    """SupMoCo: the positives of a query are the other crops of its image and every queued key
    of its degradation class; their mean similarity is the logit the loss raises."""

    needs = "labels"

    def __init__(self, num_classes: int, crop_count: int = 2, moco_t: float = 0.07,
                 queue_size: int = 8192, momentum: float = 0.999, model_name: str = "default",
                 labelling_strategy: str = "default", data_type: list = ["noise"]):
        super().__init__(crop_count, moco_t, queue_size, momentum, model_name)
        _check_labelling(labelling_strategy, data_type)
        self.num_classes = num_classes
        self.labelling_strategy, self.data_type = labelling_strategy, list(data_type)
        # an empty slot's class is num_classes: never any image's
        self.register_buffer("queue_labels", torch.full((queue_size,), num_classes,
                                                        dtype=torch.long))

    def contrast(self, im_q, im_k, targets) -> torch.Tensor:
        q, _, per_query = self._queries_and_keys(im_q, im_k)
        labels = targets.long()
        in_batch = (q[:, None] * per_query).sum(2).sum(1) / self.T
        same = (labels[:, None] == self.queue_labels[None, :]).float()   # N x K
        in_queue = (q * (same @ self.queue.T)).sum(1) / self.T
        l_pos = (in_batch + in_queue) / (self.positives + same.sum(1))
        l_neg = q @ self.queue.clone() / self.T
        self._enqueue(per_query[:, 0], queue_labels=labels)
        return torch.cat([l_pos[:, None], l_neg], dim=1)


@MODELS.register("weakcon", tasks=("contrastive",), limits={
    "crop_count": count(2), "queue_size": count(1), "moco_t": number(above=0),
    "momentum": number(0, 1)})
class WeakCon(MomentumContrast):
    """WeakCon: MoCo's positives; each negative's similarity scaled by the Euclidean distance
    between the query's degradation vector and the queued key's."""

    needs = "vectors"

    def __init__(self, vector_size: int, crop_count: int = 2, moco_t: float = 0.07,
                 queue_size: int = 8192, momentum: float = 0.999, model_name: str = "default",
                 labelling_strategy: str = "default", data_type: list = ["noise"]):
        super().__init__(crop_count, moco_t, queue_size, momentum, model_name)
        _check_labelling(labelling_strategy, data_type)
        self.labelling_strategy, self.data_type = labelling_strategy, list(data_type)
        self.register_buffer("queue_vectors", torch.zeros(vector_size, queue_size))

    def contrast(self, im_q, im_k, targets) -> torch.Tensor:
        q, _, per_query = self._queries_and_keys(im_q, im_k)
        vectors = targets.float()                                       # N x V
        l_pos = ((q[:, None] * per_query).sum(2) / self.T).sum(1) / self.positives
        weights = torch.cdist(vectors, self.queue_vectors.T)            # N x K
        l_neg = (q @ self.queue.clone()) * weights / self.T
        self._enqueue(per_query[:, 0], queue_vectors=vectors.T)
        return torch.cat([l_pos[:, None], l_neg], dim=1)


def _check_labelling(strategy: str, data_type: list) -> None:
    if strategy not in LABELLING:
        raise ValueError(f"labelling_strategy: expected one of {', '.join(LABELLING)}, got "
                         f"{strategy!r}")
    bad = [d for d in data_type if d not in DATA_TYPES]
    if bad or not data_type:
        raise ValueError(f"data_type: expected a list of {', '.join(DATA_TYPES)}, got "
                         f"{data_type!r}")


# -- blind SR conditioned on a frozen contrastive encoder ----------------------------------------
@MODELS.register("contrastiveblindqrcan", tasks=("sisr",), limits={
    "n_feats": count(1), "n_resgroups": count(1), "n_resblocks": count(1), "reduction": count(1),
    "num_q_layers_inner_residual": count(0), "num_layers_in_q_layer": count(1)})
class ContrastiveBlindQRCAN(nn.Module):
    """Q-RCAN (the original's, as models/dan.py builds it: no mean shift, meta-attention in the
    groups `selective_meta_blocks` picks) conditioned on the 256-value embedding of a frozen
    contrastive encoder (`E`, DASR's) of the LR input: blind, `forward(lr)`. The encoder's
    weights come from `pre_trained_encoder_weights` (a contrastive node at
    `pre_trained_encoder_epoch`, or a checkpoint file) when training starts; they are part of the
    model's weights, so a checkpoint, eval, predict and export-model run blind with no other
    file. The encoder is never trained and stays in eval mode (its batch-norm statistics
    frozen). Names as the original's ContrastiveBlindSRPipeline: `G.` (the QRCAN), `E.` (the encoder)."""

    supported_scales = (2, 3, 4, 8)
    pre_upsampled = False
    takes_metadata = False
    pretrained_encoder = True   # the sisr task loads E from pre_trained_encoder_weights

    def __init__(self, scale: int, pre_trained_encoder_weights: str = "",
                 pre_trained_encoder_epoch: int | str = "best", embedding_type: str = "pre-q",
                 n_feats: int = 64, n_resgroups: int = 10, n_resblocks: int = 20, reduction: int = 16, res_scale: float = 1.0,
                 selective_meta_blocks: list = [], num_q_layers_inner_residual: int = 0,
                 num_layers_in_q_layer: int = 2):
        super().__init__()
        if embedding_type not in ("pre-q", "q"):
            raise ValueError(f"embedding_type: expected 'pre-q' (the pooled embedding) or 'q' "
                             f"(after the encoder's MLP), got {embedding_type!r}")
        if selective_meta_blocks and len(selective_meta_blocks) != n_resgroups:
            raise ValueError(f"selective_meta_blocks: expected one flag per residual group "
                             f"({n_resgroups}), got {len(selective_meta_blocks)}")
        self.embed_digit = 0 if embedding_type == "pre-q" else 1
        self.G = QRCANRestorer(n_feats, scale, EMBEDDING, n_resgroups, n_resblocks, reduction,
                               res_scale, selective_meta_blocks, num_q_layers_inner_residual,
                               num_layers_in_q_layer)
        self.E = Encoder()
        self.E.requires_grad_(False)
        self.E.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.E.eval()  # frozen: batch norm keeps the encoder's statistics
        return self

    def load_encoder(self, state: dict) -> None:
        self.E.load_state_dict(state)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.G(lr, self.E(lr)[self.embed_digit])  # E's weights need no gradient
