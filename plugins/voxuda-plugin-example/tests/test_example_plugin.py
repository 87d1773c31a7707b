"""The example plugin is discovered through its entry point, listed, described and usable."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

import voxuda  # noqa: E402
from voxuda.cli import main  # noqa: E402


def test_listed_with_its_distribution(capsys):
    assert main(["plugins", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    rows = [c for c in payload["components"] if c["name"] == "median"]
    assert rows == [
        dict(
            rows[0], kind="denoiser", plugin="example", distribution="voxuda-plugin-example", version="0.1.0"
        )
    ]
    assert not payload["failed"]


def test_builds_and_removes_impulse_noise():
    generator = torch.Generator().manual_seed(0)
    clean = torch.zeros(1, 1, 12, 12, 12)
    clean[..., 3:9, 3:9, 3:9] = 1.0
    noisy = clean.clone()
    spikes = torch.rand(clean.shape, generator=generator) < 0.03
    noisy[spikes] = 10.0
    denoiser = voxuda.build_component("denoiser", "median", size=3)
    out = denoiser(noisy)
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    assert (out - clean).abs().mean() < 0.2 * (noisy - clean).abs().mean()


def test_bad_config_is_rejected():
    from voxuda.errors import ConfigError

    with pytest.raises(ConfigError, match="positive odd"):
        voxuda.build_component("denoiser", "median", size=4)


def test_describe_shows_the_field(capsys):
    assert main(["describe", "median"]) == 0
    out = capsys.readouterr().out
    assert "example:median" in out and "size" in out
