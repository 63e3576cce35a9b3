"""Small U-Nets (PyTorch), 3D or 2D: conv-BN-ReLU blocks, strided-conv downsampling, transposed-conv
upsampling; and the softmax wrapper that is exported."""

from __future__ import annotations

import torch
from torch import nn

_LAYERS = {3: (nn.Conv3d, nn.BatchNorm3d, nn.ConvTranspose3d), 2: (nn.Conv2d, nn.BatchNorm2d, nn.ConvTranspose2d)}


def _block(c_in: int, c_out: int, dims: int) -> nn.Sequential:
    conv, norm, _ = _LAYERS[dims]
    return nn.Sequential(
        conv(c_in, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True),
        conv(c_out, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """``levels`` resolutions (each halving the grid), ``base`` channels at full resolution, doubling down;
    ``dims`` 3 (volumes) or 2 (slices)."""

    def __init__(self, in_channels: int = 1, classes: int = 3, base: int = 8, levels: int = 4,
                 dims: int = 3) -> None:
        super().__init__()
        conv, _, up = _LAYERS[dims]
        ch = [base * 2**i for i in range(levels)]
        self.enc = nn.ModuleList([_block(in_channels, ch[0], dims)])
        self.down = nn.ModuleList()
        for i in range(1, levels):
            self.down.append(conv(ch[i - 1], ch[i - 1], 2, stride=2))
            self.enc.append(_block(ch[i - 1], ch[i], dims))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(levels - 1, 0, -1):
            self.up.append(up(ch[i], ch[i - 1], 2, stride=2))
            self.dec.append(_block(2 * ch[i - 1], ch[i - 1], dims))
        self.head = conv(ch[0], classes, 1)

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


class UNet3D(UNet):
    """The demo liver model's network."""

    def __init__(self, in_channels: int = 1, classes: int = 3, base: int = 8, levels: int = 4) -> None:
        super().__init__(in_channels, classes, base, levels, dims=3)


class WithSoftmax(nn.Module):
    """What is exported: logits -> class probabilities (over dim 1, the classes), so the served model
    outputs softmax."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)
