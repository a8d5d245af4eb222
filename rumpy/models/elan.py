"""ELAN (Zhang et al., "Efficient Long-Range Attention Network for Image Super-Resolution", ECCV
2022) and Q-ELAN, the original tool's variant with meta-attention.

ELAN's blocks (ELAB) alternate a local feature extractor (two shift convolutions: a fixed
depthwise 3x3 that moves four fifths of the channels one pixel, a fifth in each direction,
then a learnt 1x1) with grouped multi-scale self-attention (GMSA): the channels are split in
three, and each third attends within non-overlapping windows of its own size (`window_sizes`),
every other block on windows shifted by half their size. Queries and keys are the same
projection (no separate key, no scaling), and with `n_share` > 0 the next `n_share` layers
reuse the first one's attention maps. The image is padded (reflect) to a multiple of the
windows' least common multiple and the output cropped back, so any size works.

Module and buffer names are the original tool's (its ELAN_blocks.py, architectures.py: `head.0`,
`body.<i>.modules_lfe.lfe_<j>.conv0.shift_conv.conv1x1`, `modules_gmsa.gmsa_<j>.project_inp`,
`tail.0`, `sub_mean`/`add_mean`, Q-ELAN's `meta_attention.attribute_integrator`), so its
checkpoints load by name. The original keeps its fixed shift kernels and mean shift as
parameters that are never trained; here they are buffers with the same names, so the parameter
count is what is trained."""
from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..limits import Limit, count, number
from .common import DIV2K_MEAN, ParaCALayer
from .registry import MODELS

META_BLOCKS = ("q-layer", "none")
# the original's other meta blocks, and why rumpy lacks them
META_BLOCKS_NOT_BUILT = {"da-layer": "DASR's degradation-aware convolution is not ported",
                         "dgfmb-layer": "the DGFMB layer is not ported"}
PLACEMENTS = ("last_pass", "first_pass")


class MeanShift(nn.Module):
    """The DIV2K mean removed or restored, as the original's 1x1 convolution (its `weight` and
    `bias`, here buffers: a checkpoint's values are used as they are)."""

    def __init__(self, rgb_range: float, sign: int):
        super().__init__()
        self.register_buffer("weight", torch.eye(3).view(3, 3, 1, 1))
        self.register_buffer("bias", sign * rgb_range * torch.tensor(DIV2K_MEAN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


class ShiftConv1x1(nn.Module):
    """Fixed one-pixel shifts of four channel groups, one per direction (the fifth group, with
    the remainder, stays), then a 1x1 convolution: a 3x3 receptive field at a 1x1's cost."""

    def __init__(self, inp: int, out: int):
        super().__init__()
        g = inp // 5
        weight = torch.zeros(inp, 1, 3, 3)
        weight[0 * g:1 * g, 0, 1, 2] = 1.0
        weight[1 * g:2 * g, 0, 1, 0] = 1.0
        weight[2 * g:3 * g, 0, 2, 1] = 1.0
        weight[3 * g:4 * g, 0, 0, 1] = 1.0
        weight[4 * g:, 0, 1, 1] = 1.0
        self.register_buffer("weight", weight)
        self.conv1x1 = nn.Conv2d(inp, out, 1)
        self.groups = inp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1x1(F.conv2d(x, self.weight, padding=1, groups=self.groups))


class ShiftConv(nn.Module):
    """A wrapper only for the name `shift_conv` (the original chose between two equivalent
    implementations there; its default, the one here, is the one its ELAN builds)."""

    def __init__(self, inp: int, out: int):
        super().__init__()
        self.shift_conv = ShiftConv1x1(inp, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift_conv(x)


class LFE(nn.Module):
    """Local feature extraction: shift conv to `exp_ratio` x the channels, ReLU, shift conv
    back."""

    def __init__(self, channels: int, exp_ratio: int):
        super().__init__()
        self.conv0 = ShiftConv(channels, channels * exp_ratio)
        self.act = nn.ReLU(inplace=True)
        self.conv1 = ShiftConv(channels * exp_ratio, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.act(self.conv0(x)))


def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """B x C x H x W -> (B * windows) x size^2 x C, windows row by row."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // size, size, w // size, size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, size * size, c)


def _unwindows(y: torch.Tensor, size: int, b: int, h: int, w: int) -> torch.Tensor:
    c = y.shape[-1]
    y = y.view(b, h // size, w // size, size, size, c)
    return y.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


class GMSA(nn.Module):
    """Grouped multi-scale self-attention. The layer that computes attention projects to twice
    the channels (each third's first half is query and key, its second half the value); a
    sharing layer projects to the values only and applies the maps it is given."""

    def __init__(self, channels: int, shifts: int, window_sizes: list, calc_attn: bool):
        super().__init__()
        self.shifts, self.window_sizes, self.calc_attn = shifts, list(window_sizes), calc_attn
        width = channels * 2 if calc_attn else channels
        self.split = [width // 3] * 3
        self.project_inp = nn.Sequential(nn.Conv2d(channels, width, 1), nn.BatchNorm2d(width))
        self.project_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, prev_atns: Optional[List[torch.Tensor]] = None
                ) -> tuple[torch.Tensor, List[torch.Tensor]]:
        b, _, h, w = x.shape
        parts = torch.split(self.project_inp(x), self.split, dim=1)
        ys: List[torch.Tensor] = []
        atns: List[torch.Tensor] = []
        for i, part in enumerate(parts):
            size = self.window_sizes[i]
            if self.shifts > 0:
                # the original's amounts: -size // 2 rounds down, so an odd window is rolled
                # one pixel further than it is rolled back
                part = torch.roll(part, shifts=(-size // 2, -size // 2), dims=(2, 3))
            if prev_atns is None:
                qv = _windows(part, size)
                half = qv.shape[-1] // 2
                q, v = qv[..., :half], qv[..., half:]
                atn = (q @ q.transpose(-2, -1)).softmax(dim=-1)
            else:
                atn, v = prev_atns[i], _windows(part, size)
            y = _unwindows(atn @ v, size, b, h, w)
            if self.shifts > 0:
                y = torch.roll(y, shifts=(size // 2, size // 2), dims=(2, 3))
            ys.append(y)
            atns.append(atn)
        return self.project_out(torch.cat(ys, dim=1)), atns


class ELAB(nn.Module):
    """1 + `shared_depth` pairs of (LFE, GMSA), each added to its input; only the first GMSA
    computes attention. Q-ELAN's blocks add meta-attention before the first pair
    ('first_pass') or after the last ('last_pass')."""

    def __init__(self, channels: int, exp_ratio: int, shifts: int, window_sizes: list,
                 shared_depth: int, meta_attention: nn.Module | None = None,
                 meta_placement: str = "last_pass"):
        super().__init__()
        self.shared_depth = shared_depth
        self.modules_lfe = nn.ModuleDict(
            {f"lfe_{i}": LFE(channels, exp_ratio) for i in range(1 + shared_depth)})
        self.modules_gmsa = nn.ModuleDict(
            {f"gmsa_{i}": GMSA(channels, shifts, window_sizes, calc_attn=i == 0)
             for i in range(1 + shared_depth)})
        # None leaves no entry in the state dict, as in the original
        self.meta_attention = meta_attention
        self.first_pass = meta_placement == "first_pass"

    def forward(self, x: torch.Tensor, metadata: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.meta_attention is not None and metadata is not None and self.first_pass:
            x = self.meta_attention(x, metadata)
        atn: Optional[List[torch.Tensor]] = None
        for lfe, gmsa in zip(self.modules_lfe.values(), self.modules_gmsa.values()):
            x = lfe(x) + x
            y, atn = gmsa(x, atn)
            x = y + x
        if self.meta_attention is not None and metadata is not None and not self.first_pass:
            x = self.meta_attention(x, metadata)
        return x


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right edges to a multiple of `multiple` (reflect, as the original)."""
    h, w = x.shape[-2], x.shape[-1]
    pad_h, pad_w = (multiple - h % multiple) % multiple, (multiple - w % multiple) % multiple
    if pad_h < h and pad_w < w:
        return F.pad(x, [0, pad_w, 0, pad_h], mode="reflect")
    # The original stops here (reflect cannot pad a side by its length or more): such small
    # images are reflected in steps, and a side of one pixel is repeated.
    while pad_h > 0:
        step = min(pad_h, x.shape[-2] - 1)
        x = F.pad(x, [0, 0, 0, step], mode="reflect") if step > 0 else \
            F.pad(x, [0, 0, 0, pad_h], mode="replicate")
        pad_h -= step if step > 0 else pad_h
    while pad_w > 0:
        step = min(pad_w, x.shape[-1] - 1)
        x = F.pad(x, [0, step, 0, 0], mode="reflect") if step > 0 else \
            F.pad(x, [0, pad_w, 0, 0], mode="replicate")
        pad_w -= step if step > 0 else pad_w
    return x


class _ELANBase(nn.Module):
    supported_scales = None  # sub-pixel tail: any integer scale
    pre_upsampled = False

    def _build(self, scale: int, window_sizes: list, m_elan: int, c_elan: int, n_share: int,
               r_expand: int, apply_mean_shift: bool, rgb_range: float, meta) -> None:
        if len(window_sizes) != 3:
            raise ValueError(f"window_sizes: expected 3 sizes (one per third of the channels), "
                             f"got {list(window_sizes)}")
        if c_elan % 3:
            raise ValueError(f"c_elan: expected a multiple of 3 (attention splits the channels "
                             f"in three), got {c_elan}")
        self.scale, self.apply_mean_shift = scale, apply_mean_shift
        self.multiple = math.lcm(*window_sizes)  # every window tiles the padded image
        self.sub_mean = MeanShift(rgb_range, -1)
        self.add_mean = MeanShift(rgb_range, +1)
        self.head = nn.Sequential(nn.Conv2d(3, c_elan, 3, 1, 1))
        # blocks alternate unshifted and shifted windows; `meta(i)` is block i's meta-attention
        self.body = nn.ModuleList(
            ELAB(c_elan, r_expand, i % 2, window_sizes, n_share, *meta(i))
            for i in range(m_elan // (1 + n_share)))
        self.tail = nn.Sequential(nn.Conv2d(c_elan, 3 * scale * scale, 3, 1, 1),
                                  nn.PixelShuffle(scale))

    def _run(self, x: torch.Tensor, metadata: Optional[torch.Tensor]) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        x = pad_to_multiple(x, self.multiple)
        if self.apply_mean_shift:
            x = self.sub_mean(x)
        x = self.head(x)
        res = x
        for block in self.body:
            res = block(res, metadata)
        x = self.tail(res + x)
        if self.apply_mean_shift:
            x = self.add_mean(x)
        return x[:, :, :h * self.scale, :w * self.scale]


ELAN_LIMITS = {"window_sizes": count(1, items=3), "m_elan": count(0), "n_share": count(0),
               "c_elan": Limit(integer=True, low=3, multiple_of=3), "r_expand": count(1),
               "rgb_range": number(above=0)}
QELAN_LIMITS = {**ELAN_LIMITS, "num_layers_in_q_block": count(1), "num_q_blocks": count(-1)}


@MODELS.register("elan", tasks=("sisr",), limits=ELAN_LIMITS)
class ELAN(_ELANBase):
    """The original's defaults are ELAN's (36 blocks of 180 channels); ELAN-light is
    m_elan = 24, c_elan = 60."""

    def __init__(self, scale: int, window_sizes: list = (4, 8, 16), m_elan: int = 36,
                 c_elan: int = 180, n_share: int = 0, r_expand: int = 2,
                 apply_mean_shift: bool = True, rgb_range: float = 1.0):
        super().__init__()
        self._build(scale, window_sizes, m_elan, c_elan, n_share, r_expand, apply_mean_shift,
                    rgb_range, lambda i: ())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)


def check_meta(meta_block: str, meta_placement: str) -> None:
    if meta_block in META_BLOCKS_NOT_BUILT:
        raise ValueError(f"meta_block: {meta_block!r} is not available: "
                         f"{META_BLOCKS_NOT_BUILT[meta_block]} (meta blocks: "
                         f"{', '.join(META_BLOCKS)})")
    if meta_block not in META_BLOCKS:
        raise ValueError(f"meta_block: expected one of {', '.join(META_BLOCKS)}, got "
                         f"{meta_block!r}")
    if meta_placement not in PLACEMENTS:
        raise ValueError(f"meta_placement: expected one of {', '.join(PLACEMENTS)}, got "
                         f"{meta_placement!r}")


@MODELS.register("qelan", tasks=("sisr",), limits=QELAN_LIMITS)
class QELAN(_ELANBase):
    """The original's QELAN with its 'q-layer' meta block: meta-attention (1x1 convolutions on
    the metadata, ReLU between, sigmoid last) scaling the output of the first `num_q_blocks`
    blocks (-1: every block). The original has no usable default there (its QELAN compares the
    block index with None; a negative number gives no block meta-attention): -1 is rumpy's.
    `meta_block = "none"` is the original's QELAN with its meta_block unset: ELAN that is
    handed the metadata and ignores it."""

    takes_metadata = True

    def __init__(self, scale: int, num_metadata: int, window_sizes: list = (4, 8, 16),
                 m_elan: int = 36, c_elan: int = 180, n_share: int = 0, r_expand: int = 2,
                 apply_mean_shift: bool = True, rgb_range: float = 1.0,
                 meta_block: str = "q-layer", num_layers_in_q_block: int = 2,
                 meta_placement: str = "last_pass", num_q_blocks: int = -1):
        super().__init__()
        check_meta(meta_block, meta_placement)

        def meta(i: int) -> tuple:
            if meta_block == "none" or 0 <= num_q_blocks <= i:
                return ()
            return ParaCALayer(c_elan, num_metadata, num_layers_in_q_block), meta_placement

        self._build(scale, window_sizes, m_elan, c_elan, n_share, r_expand, apply_mean_shift,
                    rgb_range, meta)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        # the original's q-layers are 1x1 convolutions: the code as a 1x1 map
        return self._run(x, metadata.reshape(metadata.shape[0], -1, 1, 1))
