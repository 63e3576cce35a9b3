"""A small 3D U-Net (PyTorch): conv-BN-ReLU blocks, strided-conv downsampling, transposed-conv upsampling."""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True),
        nn.Conv3d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))


class UNet3D(nn.Module):
    """``levels`` resolutions (each halving the grid), ``base`` channels at full resolution, doubling down."""

    def __init__(self, in_channels: int = 1, classes: int = 3, base: int = 8, levels: int = 4) -> None:
        super().__init__()
        ch = [base * 2**i for i in range(levels)]
        self.enc = nn.ModuleList([_block(in_channels, ch[0])])
        self.down = nn.ModuleList()
        for i in range(1, levels):
            self.down.append(nn.Conv3d(ch[i - 1], ch[i - 1], 2, stride=2))
            self.enc.append(_block(ch[i - 1], ch[i]))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(levels - 1, 0, -1):
            self.up.append(nn.ConvTranspose3d(ch[i], ch[i - 1], 2, stride=2))
            self.dec.append(_block(2 * ch[i - 1], ch[i - 1]))
        self.head = nn.Conv3d(ch[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.enc):
            if i > 0:
                x = self.down[i - 1](x)
            x = enc(x)
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


class WithSoftmax(nn.Module):
    """What is exported: logits -> class probabilities, so the served model outputs softmax."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)
