"""scripts/domain_statistics.py: what NGM sees of a domain's noise, and the particles' contrast."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from domain_statistics import domain_statistics, main, noise_check  # noqa: E402

from tests.noise.helpers import smooth_volumes  # noqa: E402


def _volumes(noise: torch.Tensor, contrast: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-variance noise with a dark 6^3 cube of ``contrast`` (in noise standard deviations) planted."""
    labels = torch.zeros(noise.shape[0], 16, 16, 16, dtype=torch.long)
    labels[:, 5:11, 5:11, 5:11] = 1
    volumes = noise - contrast * labels[:, None].float()
    return volumes, labels


def test_white_noise_is_seen_by_ngm_and_smooth_noise_is_not() -> None:
    g = torch.Generator().manual_seed(0)
    white = torch.randn(12, 1, 16, 16, 16, generator=g)
    smooth = smooth_volumes(12, 16, g, cutoff=0.06)  # a Gaussian low-pass: the band of 10-voxel particles
    white_stats = domain_statistics(*_volumes(white, 0.0))
    smooth_stats = domain_statistics(*_volumes(smooth, 0.0))
    assert white_stats["hp_share"] > 0.6  # NGM keeps about 3/4 of a white spectrum (its box zeroes ~1/4)
    assert smooth_stats["hp_share"] < 0.05  # noise in the particles' band: nearly invisible to NGM


def test_contrast_and_skewness_follow_the_planted_particles() -> None:
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(12, 1, 16, 16, 16, generator=g)
    strong = domain_statistics(*_volumes(noise, 3.0))
    weak = domain_statistics(*_volumes(noise, 1.0))
    # contrast is in units of the volume's standard deviation, which the planted cube itself raises
    assert strong["contrast"] < weak["contrast"] < -0.8
    assert strong["skewness"] < weak["skewness"] < 0  # sparse dark particles skew the values negative
    assert strong["fg"] == pytest.approx(216 / 4096)


def test_a_folder_without_a_manifest_is_one_usage_error(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no manifest.csv" in capsys.readouterr().err


def test_the_noise_check_gives_the_target_colour_where_the_source_lacks_it() -> None:
    g = torch.Generator().manual_seed(2)
    source, _ = _volumes(smooth_volumes(16, 16, g, cutoff=0.06), 3.0)
    target, _ = _volumes(smooth_volumes(16, 16, g, cutoff=0.06), 1.0)
    target = target + 0.7 * torch.randn(target.shape, generator=g)  # a white band the source lacks
    check = noise_check(source, target)
    assert set(check) == {"source, radial", "target, radial", "source, full", "target, full"}
    assert check["source, radial"]["v"] == pytest.approx(check["target, radial"]["v"])
    assert check["target, radial"]["v"] > 0.5
    assert check["source, radial"]["high (>0.3)"] < 0.2  # the source's own colour leaves the high band empty
    assert check["target, radial"]["high (>0.3)"] == pytest.approx(1.0, abs=0.15)
    for row in check.values():  # all match the skewness
        assert abs(row["noisy_skewness"]) < 0.6 * abs(row["source_skewness"])


def test_the_noise_check_measures_the_share_of_noise_in_the_missing_wedge() -> None:
    from voxuda.simulate.wedge import wedge_mask

    mask = torch.from_numpy(wedge_mask((16, 16, 16), -60.0, 60.0))
    g = torch.Generator().manual_seed(3)

    def wedged(volumes: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifftn(torch.fft.fftn(volumes, dim=(-3, -2, -1)) * mask, dim=(-3, -2, -1)).real

    source, _ = _volumes(smooth_volumes(16, 16, g, cutoff=0.2), 3.0)
    target, _ = _volumes(smooth_volumes(16, 16, g, cutoff=0.2), 2.0)
    check = noise_check(wedged(source), wedged(target))
    assert check["source, full"]["v"] > 0.3  # the premise holds: the target's particles are fainter
    row = check["target, full"]
    assert 0.2 < row["empty_freqs"] < 0.5  # the wedge: a third of the directions (less near the k_y axis)
    assert row["target_empty"] < 1e-4
    assert check["source, radial"]["empty"] > 0.1  # radial noise fills it
    assert check["source, full"]["empty"] < 1e-3 and row["empty"] < 1e-3
