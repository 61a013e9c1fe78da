"""The embedding networks: camwatch's CPU drift net and the seed project's baseline.

Why this shape (measured, see docs/model-card.md): on a 2-core CPU the cost is
in convolutions at high resolution, so five stride-2 3x3 convolutions (no
pooling layers, no double convs) carry the whole feature pyramid. A moved view
must land far from its reference, so most of the embedding is a flattened
spatial map (no global pooling there); a small globally pooled "texture"
branch sees blur and covers wherever they are.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn(cin: int, cout: int, stride: int = 2) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Standardise(nn.Module):
    """Per-image zero mean / unit spread: global gain and offset (exposure, IR) vanish.

    The +16 (a grey-level std of 4) keeps a flat covered or blinded frame flat
    instead of amplifying its noise into texture.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) / torch.sqrt(var + 16.0)


class CamwatchNet(nn.Module):
    """Grey 128x128 (0..255) -> 128-d unit vector. ~0.33 M parameters, ~9 M MACs."""

    def __init__(self, dim: int = 128, size: int = 128, widths: tuple[int, ...] = (8, 24, 48, 96, 128)):
        super().__init__()
        self.norm = Standardise()
        c1, c2, c3, c4, c5 = widths
        self.b1, self.b2, self.b3 = conv_bn(1, c1), conv_bn(c1, c2), conv_bn(c2, c3)
        self.b4, self.b5 = conv_bn(c3, c4), conv_bn(c4, c5)
        s8, s4 = size // 16, size // 32
        self.pos8 = nn.Sequential(nn.Conv2d(c4, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.pos4 = nn.Sequential(nn.Conv2d(c5, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True))
        n_in = 8 * s8 * s8 + 32 * s4 * s4 + c3 + c5
        self.head = nn.Linear(n_in, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        x3 = self.b3(self.b2(self.b1(x)))
        x4 = self.b4(x3)
        x5 = self.b5(x4)
        pos = torch.cat([torch.flatten(self.pos8(x4), 1), torch.flatten(self.pos4(x5), 1)], 1)
        tex = torch.cat([x3.mean(dim=(2, 3)), x5.mean(dim=(2, 3))], 1)
        return F.normalize(self.head(torch.cat([pos, tex], 1)), dim=1, eps=1e-6)


class SeedNet(nn.Module):
    """The seed project's architecture: 28x28 colour, 5 conv+pool blocks, 784-d embedding.

    Kept only as a baseline for the evaluation table; inputs arrive scaled to
    0..1 and normalised by the mean/std in the model metadata.
    """

    def __init__(self, dim: int = 784, widths: tuple[int, ...] = (32, 64, 128, 128, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for c in widths:
            layers += [nn.Conv2d(cin, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(torch.flatten(self.features(x), 1)), dim=1, eps=1e-6)


def build(arch: str) -> tuple[nn.Module, dict]:
    """The network and its input description (becomes the ONNX metadata)."""
    if arch == "camwatch":
        return CamwatchNet(), dict(width=128, height=128, channels="gray", scale=1.0, mean=(0.0,), std=(1.0,))
    if arch == "seed":
        return SeedNet(), dict(width=28, height=28, channels="rgb", scale=1 / 255,
                               mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    raise ValueError(f"unknown architecture {arch!r} (camwatch, seed)")
