"""A classic 3D U-Net: two 3^3 conv-norm-ReLU per level, max-pool down, transposed-conv up, skip concat.

Taps: ``enc1 .. enc{L-1}`` (encoder levels before pooling), ``bottleneck`` (the deepest level) and ``decoder``
(the last decoder features before the 1x1 head). ``tap_names`` lists four taps, the natural inputs of a
feature-consistency loss: the four deepest encoder-side taps (``enc1, enc2, enc3, bottleneck`` for the default
four levels; a shallower net adds ``decoder``). ``deepest_tap`` is ``"bottleneck"``.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn

from voxuda.backbones.blocks import NormKind, check_input, make_norm
from voxuda.checks import widths
from voxuda.config import help_field


@attrs.define
class UNet3DConfig:
    """Configuration of :class:`UNet3D`."""

    in_channels: int = help_field(1, help="input channels (1 for cryo-ET density)")
    num_classes: int = help_field(2, help="output classes (2: background and macromolecule)")
    widths: tuple[int, ...] = help_field(
        (16, 32, 64, 128), help="channels per level; the last one is the bottleneck",
        validator=widths,
    )
    norm: NormKind = help_field("group", help="normalisation: group (default), instance or batch")
    channels_last_3d: bool = help_field(
        True, help="channels_last_3d memory format for weights and activations: the same results up to float "
        "rounding, faster CPU training (measured in docs/performance.md); false = the contiguous layout"
    )


class _DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, norm: NormKind, channels_last: bool) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            make_norm(norm, out_channels, channels_last),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            make_norm(norm, out_channels, channels_last),
            nn.ReLU(inplace=True),
        )


class UNet3D(nn.Module):
    """3D U-Net returning ``(logits, features)``; sizes must be multiples of ``2 ** (len(widths) - 1)``."""

    deepest_tap: str = "bottleneck"

    def __init__(self, config: UNet3DConfig | None = None, **kwargs: object) -> None:
        super().__init__()
        self.config = config if config is not None else UNet3DConfig(**kwargs)  # type: ignore[arg-type]
        cfg = self.config
        widths = tuple(int(w) for w in cfg.widths)
        self.in_channels = cfg.in_channels
        self.num_classes = cfg.num_classes
        self.encoders = nn.ModuleList()
        previous = cfg.in_channels
        for width in widths:
            self.encoders.append(_DoubleConv(previous, width, cfg.norm, cfg.channels_last_3d))
            previous = width
        self.pool = nn.MaxPool3d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for deep, shallow in zip(widths[:0:-1], widths[-2::-1]):
            self.ups.append(nn.ConvTranspose3d(deep, shallow, kernel_size=2, stride=2))
            self.decoders.append(_DoubleConv(2 * shallow, shallow, cfg.norm, cfg.channels_last_3d))
        self.head = nn.Conv3d(widths[0], cfg.num_classes, kernel_size=1)
        names = [f"enc{i + 1}" for i in range(len(widths) - 1)] + ["bottleneck"]
        self.encoder_taps: tuple[str, ...] = tuple(names)
        taps = names[-4:]
        if len(taps) < 4:  # shallow nets: the decoder output makes the fourth tap
            taps.append("decoder")
        self.tap_names: tuple[str, ...] = tuple(taps)
        self.tap_channels: dict[str, int] = {**dict(zip(names, widths)), "decoder": widths[0]}
        self.divisor = 2 ** (len(widths) - 1)
        self.memory_format = torch.channels_last_3d if cfg.channels_last_3d else torch.contiguous_format
        if cfg.channels_last_3d:
            self.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]  # torch's stub omits it

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        check_input(x, self.in_channels, self.divisor, "UNet3D")
        x = x.contiguous(memory_format=self.memory_format)
        features: dict[str, Tensor] = {}
        skips = []
        for i, encoder in enumerate(self.encoders):
            if i:
                x = self.pool(x)
            x = encoder(x)
            features[self.encoder_taps[i]] = x
            skips.append(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips[:-1])):
            x = decoder(torch.cat([up(x), skip], dim=1))
        features["decoder"] = x
        return self.head(x), features
