"""Sliding-window inference against a single full-volume pass, and the slab writer against memory."""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np
import torch
from torch import nn

from tests.segment.synthetic import ArraySink
from voxuda.data.mrc import VolumeInfo
from voxuda.segment.sliding import sliding_window
from voxuda.segment.source import ArraySource
from voxuda.segment.writer import MRCPlaneWriter, SegmentationSink


def _full_pass(model: nn.Module, volume: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        logits = model(torch.from_numpy(volume)[None, None])
    return torch.softmax(logits, dim=1)[0].numpy()


def _pointwise_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 4, 1), nn.Tanh(), nn.Conv3d(4, 3, 1)).eval()


def _conv_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv3d(3, 2, 3, padding=1)).eval()


def _slide(model: nn.Module, volume: np.ndarray, **kwargs: object) -> np.ndarray:
    sink = ArraySink(volume.shape)
    sliding_window(ArraySource(volume), model, sink, **kwargs)  # type: ignore[arg-type]
    assert sink.finished and sink.probs is not None and sink.next == volume.shape[0]
    return sink.probs


def test_pointwise_model_equals_full_pass_everywhere() -> None:
    """A per-voxel model gives the same output in every window, so any blending must reproduce it exactly."""
    volume = np.random.default_rng(0).standard_normal((37, 29, 45)).astype(np.float32)
    model = _pointwise_model()
    reference = _full_pass(model, volume)
    for patch, overlap, batch in [(16, 0.5, 3), (8, 0.25, 7), (16, 0.0, 1)]:
        got = _slide(model, volume, patch=patch, overlap=overlap, batch_size=batch)
        np.testing.assert_allclose(got, reference, rtol=0, atol=2e-6)


def test_convolution_matches_full_pass_in_the_interior() -> None:
    """A 3^3 x 2 conv net is translation-equivariant: away from the volume edges only the (down-weighted)
    window borders differ from a full pass, so the blended result agrees to a few 1e-3 (plain averaging:
    about 0.15)."""
    volume = np.random.default_rng(1).standard_normal((40, 40, 40)).astype(np.float32)
    model = _conv_model()
    reference = _full_pass(model, volume)
    got = _slide(model, volume, patch=16, overlap=0.5, batch_size=4)
    inner = (slice(None), slice(2, -2), slice(2, -2), slice(2, -2))
    assert np.abs(got[inner] - reference[inner]).max() < 3e-3
    # plain averaging weights window borders as much as centres, so it must be visibly worse
    flat = _slide(model, volume, patch=16, overlap=0.5, batch_size=4, importance="constant")
    assert np.abs(flat[inner] - reference[inner]).max() > 20 * np.abs(got[inner] - reference[inner]).max()


def test_volume_smaller_than_a_patch_is_padded() -> None:
    volume = np.random.default_rng(2).standard_normal((5, 9, 3)).astype(np.float32)
    model = _pointwise_model()
    got = _slide(model, volume, patch=16, overlap=0.5, batch_size=2)
    np.testing.assert_allclose(got, _full_pass(model, volume), atol=2e-6)


def test_slab_writer_equals_in_memory_reference(tmp_path: Path) -> None:
    volume = np.random.default_rng(3).standard_normal((30, 21, 26)).astype(np.float32)
    model = _conv_model()
    reference = _slide(model, volume, patch=8, overlap=0.5, batch_size=5)
    info = VolumeInfo((12.0, 11.0, 10.0), (1.0, 2.0, 3.0))
    labels = MRCPlaneWriter(tmp_path / "l.mrc", volume.shape, np.int8, info)
    probs = MRCPlaneWriter(tmp_path / "p.mrc", volume.shape, np.float32, info)
    sliding_window(ArraySource(volume), model, SegmentationSink(labels, probs), patch=8, overlap=0.5,
                   batch_size=5)
    assert not (tmp_path / "l.mrc").exists(), "nothing may appear under the final name before commit"
    labels.commit()
    probs.commit()
    with mrcfile.open(tmp_path / "l.mrc") as mrc:
        np.testing.assert_array_equal(mrc.data, reference.argmax(0).astype(np.int8))
        assert mrc.header.mode == 0
        vs, org = mrc.voxel_size, mrc.header.origin
        assert (float(vs.z), float(vs.y), float(vs.x)) == (12, 11, 10)
        assert (float(org.z), float(org.y), float(org.x)) == (1, 2, 3)
    with mrcfile.open(tmp_path / "p.mrc") as mrc:
        np.testing.assert_array_equal(mrc.data, (1.0 - reference[0]).astype(np.float32))
    with open(os.devnull, "w") as quiet:
        assert mrcfile.validate(tmp_path / "l.mrc", print_file=quiet)
        assert mrcfile.validate(tmp_path / "p.mrc", print_file=quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.mrc", "p.mrc"]


def test_aborted_writer_leaves_nothing(tmp_path: Path) -> None:
    writer = MRCPlaneWriter(tmp_path / "x.mrc", (4, 3, 3), np.int8, VolumeInfo())
    writer.write(0, np.zeros((2, 3, 3), np.int8))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
