"""Every registered backbone: (logits, features) contract, taps, batch sizes 1-4, norms, variants."""

from __future__ import annotations

import pytest
import torch

import voxuda
from tests.methods.helpers import has_field, load_or_skip
from voxuda.api import build_component
from voxuda.backbones.blocks import LogitsOnly, group_count

SMALL = {"unet3d": {"widths": [4, 8, 16]}, "voxresnet": {"stem_width": 4, "width": 8, "blocks_per_stage": 1}}
BACKBONES = [spec.qualified_name for spec in voxuda.list_components("backbone")]


def small_params(spec_name: str, config_cls: object) -> dict:
    bare = spec_name.split(":")[-1]
    params = dict(SMALL.get(bare, {}))
    for key, value in (("in_channels", 1), ("num_classes", 2)):
        if has_field(config_cls, key):
            params[key] = value
    return params


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("batch", [1, 4])
def test_backbone_contract(name: str, batch: int) -> None:
    spec = voxuda.list_components("backbone")[BACKBONES.index(name)]
    _, config_cls = load_or_skip(spec)
    net = build_component("backbone", {"name": name, **small_params(name, config_cls)})
    x = torch.randn(batch, 1, 16, 16, 16)
    logits, features = net(x)
    assert logits.shape == (batch, 2, 16, 16, 16)
    assert isinstance(net.tap_names, tuple) and len(net.tap_names) >= 1
    for tap in net.tap_names:
        assert tap in features and features[tap].shape[0] == batch
    assert net.deepest_tap in features
    logits.float().sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert LogitsOnly(net)(x).shape == logits.shape


@pytest.mark.parametrize("norm", ["group", "instance", "batch"])
def test_unet_norms_at_batch_one(norm: str) -> None:
    net = build_component("backbone", {"name": "unet3d", "widths": [4, 6, 8], "norm": norm})
    logits, _ = net(torch.randn(1, 1, 8, 8, 8))
    assert torch.isfinite(logits).all()


def test_unet_default_taps_and_channels_last() -> None:
    net = build_component("backbone", {"name": "unet3d", "widths": [4, 8, 8, 16], "channels_last_3d": True})
    assert net.tap_names == ("enc1", "enc2", "enc3", "bottleneck")
    logits, features = net(torch.randn(2, 1, 16, 16, 16))
    assert features["bottleneck"].shape == (2, 16, 2, 2, 2)
    assert logits.shape == (2, 2, 16, 16, 16)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.randn(1, 1, 12, 12, 12))


def test_voxresnet_variants_resolution() -> None:
    full = build_component("backbone", {"name": "voxresnet", "stem_width": 4, "width": 8})
    params = {"name": "voxresnet", "stem_width": 4, "width": 8}
    strided = build_component("backbone", {**params, "variant": "strided"})
    x = torch.randn(2, 1, 16, 16, 16)
    _, f_full = full(x)
    logits, f_strided = strided(x)
    assert f_full["f_v6"].shape[2:] == (16, 16, 16)
    assert [f_strided[t].shape[-1] for t in strided.tap_names] == [16, 8, 4, 2]
    assert logits.shape == (2, 2, 16, 16, 16)


def test_group_count_divides() -> None:
    for channels in (1, 3, 4, 6, 12, 16, 30, 64):
        groups = group_count(channels)
        assert channels % groups == 0 and 1 <= groups <= 8


def test_input_divisor_sees_through_the_logits_only_wrapper() -> None:
    from voxuda.backbones.blocks import input_divisor

    net = build_component("backbone", {"name": "unet3d", "widths": [4, 6, 8, 10]})
    assert input_divisor(net) == input_divisor(LogitsOnly(net)) == net.divisor == 8
    assert input_divisor(torch.nn.Conv3d(1, 2, 1)) == 1  # a network that declares no down-sampling
