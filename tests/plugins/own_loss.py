"""A model that owns its loss and metrics (task = "model"), as a user keeps it in one class."""
import torch
from torch import nn

from rumpy.models import MODELS


@MODELS.register("own_loss_mlp", tasks=("model",))
class OwnLossMLP(nn.Module):
    metric_directions = {"mae": "min", "within": "max"}

    def __init__(self, features: int = 6, outputs: int = 2, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, outputs))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net(batch["inputs"])

    def loss(self, pred, batch) -> torch.Tensor:
        return nn.functional.mse_loss(pred, batch["targets"].float())

    def metrics(self, pred, batch) -> dict:
        error = (pred - batch["targets"].float()).abs()
        return {"mae": error.mean(1), "within": (error < 0.5).float().mean(1)}
