"""The pre-training projector g (paper Sect. 3.3; docs/method.md, "Projector and loss")."""
from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """3-layer perceptron to the 128-d unit sphere, following SimCLR (paper Sect. 3.3, ref. [8]).

    Linear(d -> d) - BN - ReLU - Linear(d -> d) - BN - ReLU - Linear(d -> out), then L2
    normalisation. Used only during pre-training and discarded afterwards.
    """

    def __init__(self, in_dim: int = 1008, out_dim: int = 128) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(),
            nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(),
            nn.Linear(in_dim, out_dim),
        )

    def forward(self, representations: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.layers(representations), dim=1)
