"""DAN (Luo et al., "Unfolding the Alternating Optimization for Blind Super Resolution", NeurIPS
2020): a restorer conditioned on a degradation code and an estimator that predicts the code from
the LR image and the current SR estimate, alternated `loop` times from the code of a delta
kernel. Blind: forward(lr) needs no metadata. The task (tasks/sisr_dan.py) trains both on the
training sets' metadata (the blur kernel's PCA code) and scores the estimator at validation.

Module and parameter names are the original tool's (its DANv1.py / DANv1Models.py: `Restorer.`,
`Estimator.`, buffers `encoder`, `init_kernel`, `init_ker_map`, QRCAN's `head`/`body`/`tail`), so
its checkpoints load through init_weights_path. Modes: 'v1' (DAN's own restorer), 'v1QRCAN'
(Q-RCAN with meta-attention, the original's rcan-dan.toml), 'v1QHAN' (Q-HAN: the same groups
with HAN's layer and channel-spatial attention, `body.<groups>` its closing convolution, `la`,
`csa`, `last_conv`, `last` as the original's) and 'v1QELAN' (the original's QELAN, models/elan.py,
with its parameters; as in the original, `nf` does not reach it: `c_elan` is its width) and 'v2'
(DANv2.py: the estimator predicts the full kernel, softmax over its kernel_size**2 values, and
the restorer of `ng` groups of `nb` dual-path blocks is conditioned on its projection by the
`encoder` PCA matrix; trained on each image's full kernel, tasks/sisr_dan.py).""" 
from __future__ import annotations

import torch
from torch import nn

from .common import ParaCALayer
from .elan import QELAN, QELAN_LIMITS
from .han import ChannelSpatialAttention, LayerAttention
from .registry import MODELS

MODES = ("v1", "v1QRCAN", "v1QHAN", "v1QELAN", "v2")
# the original's other modes, and why rumpy lacks them
NOT_BUILT: dict[str, str] = {}


def _width(channels: int, reduction: int) -> int:
    return max(1, channels // reduction)  # tiny test networks would otherwise get 0 channels


class CALayer(nn.Module):
    """Channel attention of DAN's blocks (LeakyReLU inside)."""

    def __init__(self, nf: int, reduction: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, _width(nf, reduction), 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(_width(nf, reduction), nf, 1), nn.Sigmoid())
        self.avg = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.body(self.avg(x))


class CRBLayer(nn.Module):
    """Conditional residual block: features f1 updated from [f1, f2]; f2 passes through."""

    def __init__(self, nf1: int, nf2: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf1 + nf2, nf1 + nf2, 3, 1, 1),
                                  nn.LeakyReLU(0.2, True),
                                  nn.Conv2d(nf1 + nf2, nf1, 3, 1, 1), CALayer(nf1))

    def forward(self, x: tuple) -> tuple:
        f1, f2 = x
        return self.body(torch.cat((f1, f2), 1)) + f1, f2


class Estimator(nn.Module):
    """The degradation code from the LR image and the SR estimate (brought to LR size by a 9x9
    convolution of stride `scale`), pooled over the image."""

    def __init__(self, out_nc: int, scale: int, nf: int = 64, num_blocks: int = 5):
        super().__init__()
        self.head_LR = nn.Conv2d(3, nf // 2, 1, 1, 0)
        self.head_HR = nn.Conv2d(3, nf // 2, 9, scale, 4)
        self.body = nn.Sequential(*[CRBLayer(nf // 2, nf // 2) for _ in range(num_blocks)])
        self.out = nn.Conv2d(nf // 2, out_nc, 3, 1, 1)
        self.globalPooling = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        f, _ = self.body((self.head_LR(lr), self.head_HR(sr)))
        return self.globalPooling(self.out(f)).flatten(1)


def _dan_upscale(nf: int, scale: int) -> nn.Sequential:
    """DAN's restorers' tail, in the original's names: x4 as two x2 pixel shuffles."""
    if scale == 4:
        return nn.Sequential(nn.Conv2d(nf, nf * 4, 3, 1, 1), nn.PixelShuffle(2),
                             nn.Conv2d(nf, nf * 4, 3, 1, 1), nn.PixelShuffle(2),
                             nn.Conv2d(nf, 3, 3, 1, 1))
    return nn.Sequential(nn.Conv2d(nf, nf * scale ** 2, 3, 1, 1), nn.PixelShuffle(scale),
                         nn.Conv2d(nf, 3, 3, 1, 1))


class Restorer(nn.Module):
    """DAN's own restorer ('v1'): the code stretched over the image enters every block."""

    def __init__(self, nf: int, nb: int, scale: int, input_para: int):
        super().__init__()
        self.head = nn.Conv2d(3, nf, 3, 1, 1)
        self.body = nn.Sequential(*[CRBLayer(nf, input_para) for _ in range(nb)])
        self.fusion = nn.Conv2d(nf, nf, 3, 1, 1)
        self.upscale = _dan_upscale(nf, scale)

    def forward(self, lr: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        b, _, h, w = lr.shape
        f, _ = self.body((self.head(lr), code[:, :, None, None].expand(b, code.shape[1], h, w)))
        return self.upscale(self.fusion(f))


class StandardCA(nn.Module):
    """The original QCALayer with style 'standard': plain channel attention."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(nn.Conv2d(channels, _width(channels, reduction), 1),
                                     nn.ReLU(inplace=True),
                                     nn.Conv2d(_width(channels, reduction), channels, 1),
                                     nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class QRCAB(nn.Module):
    def __init__(self, nf: int, reduction: int, res_scale: float, num_metadata: int,
                 q_layer: bool, q_layers: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, 3, 1, 1), nn.ReLU(True),
                                  nn.Conv2d(nf, nf, 3, 1, 1))
        self.final_body = StandardCA(nf, reduction)
        self.q_node = ParaCALayer(nf, num_metadata, q_layers) if q_layer else None
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        res = self.final_body(self.body(x))
        if self.q_node is not None:
            res = self.q_node(res, code)
        # the original adds the residual unscaled (res_scale is kept for its signature)
        return res + x


class QResidualGroup(nn.Module):
    def __init__(self, nf: int, n_resblocks: int, reduction: int, res_scale: float,
                 num_metadata: int, q_layer: bool, num_q_blocks: int, q_layers: int):
        super().__init__()
        self.body = nn.ModuleList(
            QRCAB(nf, reduction, res_scale, num_metadata,
                  q_layer and (num_q_blocks == 0 or b < num_q_blocks), q_layers)
            for b in range(n_resblocks))
        self.final_body = nn.Conv2d(nf, nf, 3, 1, 1)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        res = x
        for block in self.body:
            res = block(res, code)
        return self.final_body(res) + x


class QRCANRestorer(nn.Module):
    """The original's QRCAN as DANv1QRCAN builds it (style 'standard', q-layers on; no mean
    shift): `selective_meta_blocks` picks the residual groups with meta-attention,
    `num_q_layers_inner_residual` the first blocks of each group that have it (0: all)."""

    def __init__(self, nf: int, scale: int, num_metadata: int, n_resgroups: int,
                 n_resblocks: int, reduction: int, res_scale: float, selective: list,
                 num_q_blocks: int, q_layers: int):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, nf, 3, 1, 1))
        self.body = nn.ModuleList(
            QResidualGroup(nf, n_resblocks, reduction, res_scale, num_metadata,
                           bool(selective[g]) if selective else True, num_q_blocks, q_layers)
            for g in range(n_resgroups))
        self.final_body = nn.Conv2d(nf, nf, 3, 1, 1)
        up: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(scale.bit_length() - 1):
                up += [nn.Conv2d(nf, 4 * nf, 3, 1, 1), nn.PixelShuffle(2)]
        else:
            up += [nn.Conv2d(nf, 9 * nf, 3, 1, 1), nn.PixelShuffle(3)]
        self.tail = nn.Sequential(nn.Sequential(*up), nn.Conv2d(nf, 3, 3, 1, 1))

    def forward(self, lr: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        x = self.head(lr)
        res = x
        code = code[:, :, None, None]
        for group in self.body:
            res = group(res, code)
        return self.tail(self.final_body(res) + x)


class QHANRestorer(nn.Module):
    """The original's QHAN as DANv1QHAN builds it: QRCANRestorer's groups and layout, then HAN's
    layer attention over every group's output and the closing convolution's (stacked newest
    first, as the original concatenates them) beside channel-spatial attention on the last."""

    def __init__(self, nf: int, scale: int, num_metadata: int, n_resgroups: int,
                 n_resblocks: int, reduction: int, res_scale: float, selective: list,
                 num_q_blocks: int, q_layers: int):
        super().__init__()
        rcan = QRCANRestorer(nf, scale, num_metadata, n_resgroups, n_resblocks, reduction,
                             res_scale, selective, num_q_blocks, q_layers)
        self.head, self.tail = rcan.head, rcan.tail
        self.body = nn.ModuleList([*rcan.body, rcan.final_body])
        self.csa = ChannelSpatialAttention()
        self.la = LayerAttention()
        self.last_conv = nn.Conv2d(nf * (n_resgroups + 1), nf, 3, 1, 1)
        self.last = nn.Conv2d(nf * 2, nf, 3, 1, 1)

    def forward(self, lr: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        x = self.head(lr)
        res = x
        code = code[:, :, None, None]
        stack = []
        for group in self.body[:-1]:
            res = group(res, code)
            stack.insert(0, res)
        res = self.body[-1](res)
        stack.insert(0, res)
        layers = self.last_conv(self.la(torch.stack(stack, dim=1)).flatten(1, 2))
        return self.tail(self.last(torch.cat([self.csa(res), layers], dim=1)) + x)


class DPCB(nn.Module):
    """DANv2's dual-path conditional block: image features f1 gated by the code's features f2
    (body2: 1x1 convolutions on the 1x1 code map), f2 updated by its own path."""

    def __init__(self, nf1: int, nf2: int, ksize1: int = 3, ksize2: int = 1):
        super().__init__()
        self.body1 = nn.Sequential(nn.Conv2d(nf1, nf1, ksize1, 1, ksize1 // 2),
                                   nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(nf1, nf1, ksize1, 1, ksize1 // 2))
        self.body2 = nn.Sequential(nn.Conv2d(nf2, nf1, ksize2, 1, ksize2 // 2),
                                   nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(nf1, nf1, ksize2, 1, ksize2 // 2))

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> tuple:
        g2 = self.body2(f2)
        return f1 + self.body1(f1) * g2, f2 + g2


class DPCG(nn.Module):
    """A group of DPCBs. The original's group updates its input list in place, so its closing
    "input + output" adds the group's output to itself: 2 x the blocks' result, kept here so
    the original's weights give its outputs."""

    def __init__(self, nf1: int, nf2: int, ksize1: int, ksize2: int, nb: int):
        super().__init__()
        self.body = nn.ModuleList(DPCB(nf1, nf2, ksize1, ksize2) for _ in range(nb))

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> tuple:
        for block in self.body:
            f1, f2 = block(f1, f2)
        return 2 * f1, 2 * f2


class EstimatorV2(nn.Module):
    """DANv2's estimator: the full kernel (kernel_size**2 values summing to 1, a softmax) from
    the LR image and the SR estimate (a (4 scale + 1)-wide convolution of stride `scale`)."""

    def __init__(self, kernel_size: int, scale: int, nf: int = 64, num_blocks: int = 5):
        super().__init__()
        self.head_LR = nn.Sequential(nn.Conv2d(3, nf // 2, 5, 1, 2))
        self.head_HR = nn.Sequential(nn.Conv2d(3, nf // 2, scale * 4 + 1, scale, scale * 2))
        self.body = DPCG(nf // 2, nf // 2, 3, 3, num_blocks)
        self.tail = nn.Sequential(nn.Conv2d(nf // 2, nf, 3, 1, 1), nn.AdaptiveAvgPool2d(1),
                                  nn.Conv2d(nf, kernel_size ** 2, 1, 1, 0), nn.Softmax(1))

    def forward(self, sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        f, _ = self.body(self.head_LR(lr), self.head_HR(sr))
        return self.tail(f).flatten(1)


class RestorerV2(nn.Module):
    """DANv2's restorer: `ng` groups of `nb` DPCBs, the code entering as a 1x1 map."""

    def __init__(self, nf: int, nb: int, ng: int, scale: int, input_para: int):
        super().__init__()
        self.head1 = nn.Conv2d(3, nf, 3, 1, 1)
        self.head2 = nn.Conv2d(input_para, nf, 1, 1, 0)
        self.body = nn.ModuleList(DPCG(nf, nf, 3, 1, nb) for _ in range(ng))
        self.fusion = nn.Conv2d(nf, nf, 3, 1, 1)
        self.upscale = _dan_upscale(nf, scale)

    def forward(self, lr: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        f1, f2 = self.head1(lr), self.head2(code[:, :, None, None])
        for group in self.body:
            f1, f2 = group(f1, f2)
        return self.upscale(self.fusion(f1))


# the ranges of v1QELAN's restorer parameters, as qelan's
@MODELS.register("dan", tasks=("sisr",), limits=QELAN_LIMITS)
class DAN(nn.Module):
    supported_scales = (2, 3, 4)
    pre_upsampled = False
    takes_metadata = False      # blind: the estimator supplies the code
    estimates_metadata = True   # trained on the sets' metadata (tasks/sisr_dan.py)

    def __init__(self, scale: int, num_metadata: int, mode: str = "v1", nf: int = 64,
                 loop: int = 4, kernel_size: int = 21, use_pca_encoder: bool = True,
                 nb: int = 0, ng: int = 5, n_resgroups: int = 10, n_resblocks: int = 20, reduction: int = 16,
                 res_scale: float = 1.0, selective_meta_blocks: list = [],
                 num_q_layers_inner_residual: int = 0, num_layers_in_q_layer: int = 2,
                 estimator_nf: int = 64, estimator_blocks: int = 5,
                 window_sizes: list = (4, 8, 16), m_elan: int = 36, c_elan: int = 180,
                 n_share: int = 0, r_expand: int = 2, apply_mean_shift: bool = True,
                 rgb_range: float = 1.0, meta_block: str = "q-layer",
                 num_layers_in_q_block: int = 2, meta_placement: str = "last_pass",
                 num_q_blocks: int = -1):
        super().__init__()
        if mode in NOT_BUILT:
            raise ValueError(f"mode: {mode!r} is not available: {NOT_BUILT[mode]} (modes: "
                             f"{', '.join(MODES)})")
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        if selective_meta_blocks and len(selective_meta_blocks) != n_resgroups:
            raise ValueError(f"selective_meta_blocks: expected one flag per residual group "
                             f"({n_resgroups}), got {len(selective_meta_blocks)}")
        if loop < 1:
            raise ValueError(f"loop: expected at least 1 iteration, got {loop}")
        self.loop, self.scale, self.mode, self.kernel_size = loop, scale, mode, kernel_size
        if nb < 1:  # 0: the original's default for the mode (DANv1.py's 40, DANv2.py's 10)
            nb = 10 if mode == "v2" else 40
        if mode == "v2":
            self.Restorer = RestorerV2(nf, nb, ng, scale, num_metadata)
        elif mode == "v1":
            self.Restorer = Restorer(nf, nb, scale, num_metadata)
        elif mode == "v1QELAN":
            self.Restorer = QELAN(scale, num_metadata, window_sizes, m_elan, c_elan, n_share,
                                  r_expand, apply_mean_shift, rgb_range, meta_block,
                                  num_layers_in_q_block, meta_placement, num_q_blocks)
        else:
            restorer = QRCANRestorer if mode == "v1QRCAN" else QHANRestorer
            self.Restorer = restorer(nf, scale, num_metadata, n_resgroups, n_resblocks,
                                          reduction, res_scale, selective_meta_blocks,
                                          num_q_layers_inner_residual, num_layers_in_q_layer)
        if mode == "v2":
            self.Estimator = EstimatorV2(kernel_size, scale, estimator_nf, estimator_blocks)
        else:
            self.Estimator = Estimator(num_metadata, scale, estimator_nf, estimator_blocks)
        # The PCA basis and the starting code (a delta kernel's, or 0.5 everywhere without the
        # PCA encoder): the task fills them from the training data's basis, a checkpoint keeps
        # them, so evaluation needs no data.
        self.register_buffer("encoder", torch.zeros(1, kernel_size ** 2, num_metadata))
        delta = torch.zeros(1, kernel_size, kernel_size)
        delta[:, kernel_size // 2, kernel_size // 2] = 1
        self.register_buffer("init_kernel", delta)
        self.register_buffer("init_ker_map", torch.full((1, num_metadata), 0.5))
        self.use_pca_encoder = use_pca_encoder
        # the latest forward's final estimate: the code (v1 modes) or the full kernel (v2)
        self.last_estimate: torch.Tensor | None = None

    def forward(self, lr: torch.Tensor, all_iterations: bool = False):
        """The final SR image; with all_iterations, every iteration's (SR images, estimates):
        codes in the v1 modes, full kernels (flattened) in v2."""
        code = self.init_ker_map.expand(lr.shape[0], -1)
        srs, estimates = [], []
        for _ in range(self.loop):
            # each network sees the other's latest output as a constant, as in the paper
            sr = self.Restorer(lr, code.detach())
            estimate = self.Estimator(sr.detach(), lr)
            # v2: the restorer's next code is the estimated kernel's PCA projection
            code = estimate @ self.encoder[0] if self.mode == "v2" else estimate
            srs.append(sr)
            estimates.append(estimate)
        self.last_estimate = estimate.detach()
        return (srs, estimates) if all_iterations else srs[-1]
