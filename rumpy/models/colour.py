"""YCbCr as MATLAB's rgb2ycbcr (BT.601 studio swing, values in [0, 1]), differentiable: the
pre-upsampling models' `colorspace = "ycbcr"` runs the network on luma only, as the original
SRCNN and VDSR did, and takes the chroma from the bicubic input."""
from __future__ import annotations

import torch

_FORWARD = torch.tensor([[65.481, 128.553, 24.966],
                         [-37.797, -74.203, 112.0],
                         [112.0, -93.786, -18.214]], dtype=torch.float64) / 255.0
_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64) / 255.0
_INVERSE = torch.linalg.inv(_FORWARD)

COLORSPACES = ("rgb", "ycbcr")


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW RGB in [0, 1] -> YCbCr in [0, 1]."""
    m, o = _FORWARD.to(x.device, x.dtype), _OFFSET.to(x.device, x.dtype)
    return torch.einsum("ij,bjhw->bihw", m, x) + o[None, :, None, None]


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    m, o = _INVERSE.to(x.device, x.dtype), _OFFSET.to(x.device, x.dtype)
    return torch.einsum("ij,bjhw->bihw", m, x - o[None, :, None, None])


def check_colorspace(value: str) -> int:
    """Channels the network sees for `colorspace`."""
    if value not in COLORSPACES:
        raise ValueError(f"colorspace: expected one of {', '.join(COLORSPACES)}, got {value!r}")
    return 1 if value == "ycbcr" else 3


def split_luma(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB -> (luma Bx1xHxW, chroma Bx2xHxW)."""
    ycc = rgb_to_ycbcr(x)
    return ycc[:, :1], ycc[:, 1:]


def merge_luma(y: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    return ycbcr_to_rgb(torch.cat([y, chroma], dim=1))
