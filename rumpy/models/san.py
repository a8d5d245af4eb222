"""SAN (Dai et al., CVPR 2019, "Second-order Attention Network for Single Image Super-Resolution"):
a non-locally enhanced residual group. Region-level non-local attention at its start and end (one
module, shared, as in the authors' code) around local-source residual attention groups (LSRAGs:
residual blocks, second-order channel attention, a convolution, a skip); every LSRAG's output
also gets a learnt share of the group's input (the share-source skip)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..limits import count
from .common import DIV2K_MEAN, MeanShift, Upsampler
from .edsr import ResBlock
from .registry import MODELS

# SOCA's covariance comes from at most this many positions a side (the central crop), as in the
# authors' code: a larger image changes the attention only through what lies outside the crop.
COVARIANCE_SIDE = 1000
SQRT_ITERATIONS = 5  # the paper's Newton-Schulz iterations (approximate for wide features)


def covariance(x: torch.Tensor) -> torch.Tensor:
    """B x C x H x W -> the B x C x C covariance of the channels over the H x W positions
    (normalised by their number, as the paper's covariance pooling)."""
    flat = x.flatten(2)
    # scaled before the product, whose sums would overflow float16 (AMP) on large maps
    centred = (flat - flat.mean(dim=2, keepdim=True)) / flat.shape[2] ** 0.5
    return centred @ centred.transpose(1, 2)


def sqrtm_newton_schulz(a: torch.Tensor, iterations: int) -> torch.Tensor:
    """Square root of a batch of symmetric positive semi-definite matrices by the coupled
    Newton-Schulz iteration (iSQRT-COV), matrix products only, so autograd differentiates it.
    `a` is divided by its trace first (eigenvalues in [0, 1], where the iteration converges)
    and the root multiplied back by the trace's root. The floor keeps a constant feature map
    (covariance 0) at a root of 0 rather than 0/0."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
    trace = a.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-6).view(-1, 1, 1)
    y = a / trace
    z = eye
    for _ in range(iterations):
        t = 0.5 * (3.0 * eye - z @ y)
        y, z = y @ t, t @ z
    return y * trace.sqrt()


class SecondOrderChannelAttention(nn.Module):
    """SOCA: the channels' covariance, its square root, column means -> a sigmoid gate per
    channel (a bottleneck of num_features // reduction, like RCAN's first-order attention)."""

    def __init__(self, num_features: int, reduction: int):
        super().__init__()
        hidden = max(1, num_features // reduction)
        self.gate = nn.Sequential(
            nn.Conv2d(num_features, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_features, 1), nn.Sigmoid(),
        )
        self.side, self.iterations = COVARIANCE_SIDE, SQRT_ITERATIONS  # (TorchScript: attributes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w, side = x.shape[2], x.shape[3], self.side
        top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
        crop = x[:, :, top:top + side, left:left + side]
        root = sqrtm_newton_schulz(covariance(crop), self.iterations)
        return x * self.gate(root.mean(dim=1).view(x.shape[0], x.shape[1], 1, 1))


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al. 2018): each position adds the softmax-
    weighted sum of all positions' embeddings, projected back (from zero weights, so the block
    starts as the identity). The P x P attention is formed `max_pairs // P` query rows at a
    time: the softmax is per row, so the result is the same as in one piece and the memory
    bounded (an ONNX export attends in one piece). `pool`: keys and values max-pooled 2x2
    (the original tool's SAN code; set by qsan's `non_local_pooling`)."""

    def __init__(self, num_features: int, inner: int, max_pairs: int):
        super().__init__()
        self.theta = nn.Conv2d(num_features, inner, 1)
        self.phi = nn.Conv2d(num_features, inner, 1)
        self.g = nn.Conv2d(num_features, inner, 1)
        self.out = nn.Conv2d(inner, num_features, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.max_pairs = max_pairs
        self.pool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        query = self.theta(x).flatten(2).transpose(1, 2)
        key, value = self.phi(x), self.g(x)
        if self.pool and h >= 2 and w >= 2:  # (the original's fails on a smaller region)
            key, value = F.max_pool2d(key, 2), F.max_pool2d(value, 2)
        key = key.flatten(2)
        value = value.flatten(2).transpose(1, 2)
        positions = h * w
        step = max(1, self.max_pairs // positions)
        if not torch.jit.is_scripting() and _exporting():
            # torch.export (ONNX) cannot keep a loop whose length depends on the input's size
            step = positions
        parts = []
        for start in range(0, positions, step):
            weights = torch.softmax(query[:, start:start + step] @ key, dim=-1)
            parts.append(weights @ value)
        mixed = torch.cat(parts, dim=1).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.out(mixed)


@torch.jit.unused  # (TorchScript keeps the loop; it is never called there)
def _exporting():
    # type: () -> bool
    return torch.compiler.is_exporting()


def _halves(size: int) -> list[tuple[int, int]]:
    return [(0, size // 2), (size // 2, size)] if size >= 2 else [(0, size)]


class RegionNonLocal(nn.Module):
    """RL-NL: the non-local block run separately on each quarter of the feature map (halves of
    a side shorter than 2 are not made)."""

    def __init__(self, num_features: int, inner: int, max_pairs: int):
        super().__init__()
        self.block = NonLocal(num_features, inner, max_pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = []
        for top, bottom in _halves(x.shape[2]):
            row = [self.block(x[:, :, top:bottom, left:right])
                   for left, right in _halves(x.shape[3])]
            rows.append(torch.cat(row, dim=3))
        return torch.cat(rows, dim=2)


class LSRAG(nn.Module):
    """Local-source residual attention group: residual blocks (conv-ReLU-conv, no attention of
    their own), SOCA, a convolution, and the group's input added back."""

    def __init__(self, num_features: int, num_blocks: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            *[ResBlock(num_features, 1.0) for _ in range(num_blocks)],
            SecondOrderChannelAttention(num_features, reduction),
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


# num_features >= 8: the non-local embedding is num_features // 8 wide, as in the paper.
@MODELS.register("san", tasks=("sisr",), limits={
    "num_groups": count(0), "num_blocks": count(0), "num_features": count(8),
    "reduction": count(1, high="num_features"), "max_combined_im_size": count(1)})
class SAN(nn.Module):
    """`max_combined_im_size` (LR pixels) bounds memory the way the original tool's setting of
    that name did, without its effect on the output: RUMpy cut images into overlapping quarters
    until each had fewer pixels than this, which changes SAN's result (its covariance pooling
    and non-local attention see the whole map), while here only the non-local attention, the
    one part whose memory grows with the square of the image, is cut: into blocks no larger
    than the attention of a region of such an image, (max_combined_im_size // 4)^2 entries per
    image. The output is the same for any value. (Training keeps every block for the backward
    pass: the bound is inference's.)"""

    supported_scales = (2, 3, 4, 8)
    pre_upsampled = False

    def __init__(self, scale: int, num_groups: int = 20, num_blocks: int = 10,
                 num_features: int = 64, reduction: int = 16,
                 max_combined_im_size: int = 160000):
        super().__init__()
        self.sub_mean = MeanShift(DIV2K_MEAN, -1)
        self.add_mean = MeanShift(DIV2K_MEAN, +1)
        self.head = nn.Conv2d(3, num_features, 3, padding=1)
        self.non_local = RegionNonLocal(num_features, num_features // 8,
                                        (max_combined_im_size // 4) ** 2)
        self.groups = nn.ModuleList(LSRAG(num_features, num_blocks, reduction)
                                    for _ in range(num_groups))
        self.gamma = nn.Parameter(torch.zeros(1))  # share-source skip weight, 0 as the authors'
        self.tail = nn.Sequential(Upsampler(scale, num_features),
                                  nn.Conv2d(num_features, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        out = self.non_local(x)
        source = out
        for group in self.groups:
            out = group(out) + self.gamma * source
        return self.add_mean(self.tail(self.non_local(out) + x))
