"""VoxResNet (Chen et al. 2018) with the taps of the Vox-UDA figure: ``f_c``, ``f_v2``, ``f_v4``, ``f_v6``.

Layout (paper notes, "Backbone"): conv 3^3 + norm + ReLU, conv 3^3 (``f_c``); norm-ReLU-conv to the block
width + two VoxRes modules (``f_v2``); twice more norm-ReLU-conv + two VoxRes modules (``f_v4``, ``f_v6``).
A VoxRes module is pre-activation norm-ReLU-conv-norm-ReLU-conv plus identity.

Variants, because the paper does not say which it used:

- ``full_resolution`` (default): every stage keeps the input resolution; each tap gets a 1x1 classifier and
  the four are summed (deep supervision without resampling).
- ``strided``: the three block stages downsample with stride 2 (as in the original VoxResNet) and each tap is
  brought back to full resolution by a transposed convolution; the four auxiliary heads are summed.
"""

from __future__ import annotations

from typing import Literal

import attrs
from torch import Tensor, nn

from voxuda.backbones.blocks import NormKind, check_input, make_norm
from voxuda.checks import at_least_one
from voxuda.config import help_field


@attrs.define
class VoxResNetConfig:
    """Configuration of :class:`VoxResNet`."""

    in_channels: int = help_field(1, help="input channels")
    num_classes: int = help_field(2, help="output classes")
    stem_width: int = help_field(32, help="channels of the two stem convolutions (tap f_c)",
                                 validator=at_least_one)
    width: int = help_field(64, help="channels of the VoxRes stages (taps f_v2, f_v4, f_v6)",
                            validator=at_least_one)
    blocks_per_stage: int = help_field(2, help="VoxRes modules per stage", validator=at_least_one)
    variant: Literal["full_resolution", "strided"] = help_field(
        "full_resolution",
        help="full_resolution (no downsampling) or strided (stride-2 stages + deconv heads)",
    )
    norm: NormKind = help_field("group", help="normalisation: group (default), instance or batch")


class VoxRes(nn.Module):
    """Pre-activation residual module: x + conv(relu(norm(conv(relu(norm(x))))))."""

    def __init__(self, channels: int, norm: NormKind) -> None:
        super().__init__()
        self.body = nn.Sequential(
            make_norm(norm, channels),
            nn.ReLU(),
            nn.Conv3d(channels, channels, kernel_size=3, padding=1),
            make_norm(norm, channels),
            nn.ReLU(),
            nn.Conv3d(channels, channels, kernel_size=3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class VoxResNet(nn.Module):
    """VoxResNet returning ``(logits, {"f_c", "f_v2", "f_v4", "f_v6"})``."""

    tap_names: tuple[str, ...] = ("f_c", "f_v2", "f_v4", "f_v6")
    deepest_tap: str = "f_v6"

    def __init__(self, config: VoxResNetConfig | None = None, **kwargs: object) -> None:
        super().__init__()
        self.config = config if config is not None else VoxResNetConfig(**kwargs)  # type: ignore[arg-type]
        cfg = self.config
        self.in_channels = cfg.in_channels
        self.num_classes = cfg.num_classes
        strided = cfg.variant == "strided"
        if cfg.variant not in ("full_resolution", "strided"):
            raise ValueError(f"unknown VoxResNet variant {cfg.variant!r}")
        self.stem = nn.Sequential(
            nn.Conv3d(cfg.in_channels, cfg.stem_width, kernel_size=3, padding=1),
            make_norm(cfg.norm, cfg.stem_width),
            nn.ReLU(),
            nn.Conv3d(cfg.stem_width, cfg.stem_width, kernel_size=3, padding=1),
        )
        self.stages = nn.ModuleList()
        previous = cfg.stem_width
        for _ in range(3):
            layers: list[nn.Module] = [
                make_norm(cfg.norm, previous),
                nn.ReLU(),
                nn.Conv3d(previous, cfg.width, kernel_size=3, padding=1, stride=2 if strided else 1),
            ]
            layers += [VoxRes(cfg.width, cfg.norm) for _ in range(cfg.blocks_per_stage)]
            self.stages.append(nn.Sequential(*layers))
            previous = cfg.width
        self.heads = nn.ModuleList()
        channels = (cfg.stem_width, cfg.width, cfg.width, cfg.width)
        for level, ch in enumerate(channels):
            factor = 2**level if strided else 1
            upsample: nn.Module
            if factor == 1:
                upsample = nn.Conv3d(ch, cfg.num_classes, kernel_size=1)
            else:
                upsample = nn.ConvTranspose3d(ch, cfg.num_classes, kernel_size=factor, stride=factor)
            self.heads.append(nn.Sequential(make_norm(cfg.norm, ch), nn.ReLU(), upsample))
        self.tap_channels: dict[str, int] = dict(zip(self.tap_names, channels))
        self.divisor = 8 if strided else 1

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        check_input(x, self.in_channels, self.divisor, "VoxResNet")
        x = self.stem(x)
        taps = [x]
        for stage in self.stages:
            x = stage(x)
            taps.append(x)
        logits = self.heads[0](taps[0])
        for head, tap in zip(self.heads[1:], taps[1:]):
            logits = logits + head(tap)
        return logits, dict(zip(self.tap_names, taps))
