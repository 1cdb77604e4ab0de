"""Meso4 and MesoInception4 (Afchar et al., WIFS 2018) re-implemented in PyTorch.

Written from the paper and ``../shared/reference/face/MESONET.md``; no code of
the original Keras repository is used. Conventions that matter for parity
with the published weights:

- every convolution is stride 1, ``padding='same'`` (symmetric zero padding
  ``dil*(k-1)/2``), with bias;
- each block is Conv -> ReLU -> BatchNorm (eps 1e-3) -> MaxPool, i.e. the
  batch norm comes *after* the activation;
- the 1024-d flatten is taken in channels-last (H, W, C) order, so the NCHW
  feature map is permuted back to NHWC before ``flatten``;
- head: Dense(1024->16) -> LeakyReLU(0.1) -> Dense(16->1); Dropout is the
  identity at inference and is left out.

The module takes NHWC RGB images in [0, 1] (the published input) and returns
the pre-sigmoid logit of P(real); the sigmoid is applied by the export
wrapper. Parameter names are the canonical names produced by
:func:`streamguard.importers.mesonet.read_mesonet_h5`.

This module imports torch and is used only at import/training time.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BN_EPS", "Meso4", "MesoInception4", "MesoNet", "build"]

BN_EPS = 1e-3
INPUT_SIZE = 256


def _conv(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation)


class Inception(nn.Module):
    """InceptionLayer(a, b, c, d): 1x1 | 1x1->3x3 | 1x1->3x3 dil 2 | 1x1->3x3 dil 3."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        self.b1 = _conv(cin, a, 1)
        self.b2a, self.b2b = _conv(cin, b, 1), _conv(b, b, 3, 1)
        self.b3a, self.b3b = _conv(cin, c, 1), _conv(c, c, 3, 2)
        self.b4a, self.b4b = _conv(cin, d, 1), _conv(d, d, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = torch.relu
        return torch.cat([
            r(self.b1(x)),
            r(self.b2b(r(self.b2a(x)))),
            r(self.b3b(r(self.b3a(x)))),
            r(self.b4b(r(self.b4a(x)))),
        ], dim=1)


class MesoNet(nn.Module):
    """Shared trunk tail and head; subclasses define blocks 1 and 2."""

    block1: nn.Module
    block2: nn.Module

    def __init__(self, c2: int) -> None:
        super().__init__()
        self.bn1: nn.BatchNorm2d
        self.bn2: nn.BatchNorm2d
        self.conv3 = _conv(c2, 16, 5)
        self.bn3 = nn.BatchNorm2d(16, eps=BN_EPS)
        self.conv4 = _conv(16, 16, 5)
        self.bn4 = nn.BatchNorm2d(16, eps=BN_EPS)
        self.fc1 = nn.Linear(1024, 16)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, image_nhwc: torch.Tensor) -> torch.Tensor:
        x = image_nhwc.permute(0, 3, 1, 2)
        x = nn.functional.max_pool2d(self.bn1(torch.relu(self.block1(x))), 2)
        x = nn.functional.max_pool2d(self.bn2(torch.relu(self.block2(x))), 2)
        x = nn.functional.max_pool2d(self.bn3(torch.relu(self.conv3(x))), 2)
        x = nn.functional.max_pool2d(self.bn4(torch.relu(self.conv4(x))), 4)
        x = x.permute(0, 2, 3, 1).flatten(1)  # Keras flattens channels-last
        x = nn.functional.leaky_relu(self.fc1(x), 0.1)
        out: torch.Tensor = self.fc2(x)
        return out


class Meso4(MesoNet):
    def __init__(self) -> None:
        super().__init__(8)
        self.block1 = _conv(3, 8, 3)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.block2 = _conv(8, 8, 5)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)


class MesoInception4(MesoNet):
    def __init__(self) -> None:
        super().__init__(12)
        self.block1 = Inception(3, 1, 4, 4, 2)
        self.bn1 = nn.BatchNorm2d(11, eps=BN_EPS)
        self.block2 = Inception(11, 2, 4, 4, 2)
        self.bn2 = nn.BatchNorm2d(12, eps=BN_EPS)

    def forward(self, image_nhwc: torch.Tensor) -> torch.Tensor:
        # The inception branches already end in ReLU; a second ReLU is a no-op,
        # so the shared forward (which applies one after block1/block2) is exact.
        return super().forward(image_nhwc)


def build(variant: str) -> MesoNet:
    if variant == "Meso4":
        return Meso4()
    if variant == "MesoInception4":
        return MesoInception4()
    raise ValueError(f"unknown MesoNet variant {variant!r}")


class WithProbability(nn.Module):
    """Export wrapper: ``(prob_real, logit_real)``, both (N, 1)."""

    def __init__(self, net: MesoNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.net(image)
        return torch.sigmoid(logit), logit
