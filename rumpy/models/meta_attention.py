"""Meta-attention (Aquilina et al., "Improving Super-Resolution Performance using Meta-Attention
Layers", IEEE Signal Processing Letters 2021): the metadata vector, through two fully connected
layers and a sigmoid, gives one weight per feature channel that scales a block's output. The
original tool's `q_layer_nonlinearity` puts a ReLU between the two layers."""
from __future__ import annotations

import torch
from torch import nn


class MetaAttention(nn.Module):
    def __init__(self, num_metadata: int, num_features: int, nonlinearity: bool):
        super().__init__()
        if num_metadata < 1:
            raise ValueError("meta-attention needs at least one metadata value per image")
        layers: list[nn.Module] = [nn.Linear(num_metadata, num_features)]
        if nonlinearity:
            layers.append(nn.ReLU(inplace=True))
        layers += [nn.Linear(num_features, num_features), nn.Sigmoid()]
        self.fc = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        return x * self.fc(metadata)[:, :, None, None]
