"""Meta-attention (Aquilina et al., "Improving Super-Resolution Performance using Meta-Attention
Layers", IEEE Signal Processing Letters 2021): the metadata vector, through two fully connected
layers (to half the channels, then to all) and a sigmoid, gives one weight per feature channel that scales a block's output. The
original tool's `q_layer_nonlinearity` puts a ReLU between the two layers."""
from __future__ import annotations

import torch
from torch import nn


class MetaAttention(nn.Module):
    def __init__(self, num_metadata: int, num_features: int, nonlinearity: bool):
        super().__init__()
        if num_metadata < 1:
            raise ValueError("meta-attention needs at least one metadata value per image")
        # The hidden width steps from the metadata towards the channels, as in the authors' code:
        # half the channels, or half-way from a long metadata vector (> 15 values) to them.
        hidden = (num_features // 2 if num_metadata <= 15 else
                  (num_features - num_metadata) // 2 + num_metadata)
        layers: list[nn.Module] = [nn.Linear(num_metadata, max(1, hidden))]
        if nonlinearity:
            layers.append(nn.ReLU(inplace=True))
        layers += [nn.Linear(max(1, hidden), num_features), nn.Sigmoid()]
        self.fc = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        return x * self.fc(metadata)[:, :, None, None]
