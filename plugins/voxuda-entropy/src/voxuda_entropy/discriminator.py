"""ADVENT's fully convolutional discriminator, in 3D.

ADVENT (Vu et al. 2019, after Hung et al. 2018) classifies the domain of *patches* of a self-information map
with strided 4x4 convolutions and leaky ReLUs and no normalisation. Here the convolutions are 3x3x3 with
stride 2 and padding 1, so every downsampling maps a side ``s`` to ``ceil(s / 2)`` and tiny subtomograms
(8^3, 16^3) never shrink to zero voxels; the output is a coarse ``(N, 1, d, h, w)`` grid of domain logits.
No normalisation layers, because the discriminator sees source and target batches separately and batch
statistics would leak the domain label.
"""

from __future__ import annotations

from torch import Tensor, nn


class AdventDiscriminator3D(nn.Module):
    """Fully convolutional 3D domain classifier returning "is target" logits ``(N, 1, d, h, w)``."""

    def __init__(self, in_channels: int, width: int = 16, downsamplings: int = 3) -> None:
        super().__init__()
        if in_channels < 1 or width < 1 or downsamplings < 1:
            raise ValueError(
                f"need in_channels, width and downsamplings >= 1, got {in_channels}, {width}, {downsamplings}"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for level in range(downsamplings):
            out = width * 2 ** min(level, 3)
            layers += [nn.Conv3d(channels, out, kernel_size=3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(nn.Conv3d(channels, 1, kernel_size=3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, maps: Tensor) -> Tensor:
        if maps.ndim != 5:
            raise ValueError(f"AdventDiscriminator3D expects (N, C, D, H, W) maps, got {tuple(maps.shape)}")
        return self.net(maps)
