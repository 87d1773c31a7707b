"""Every registered validator ranks a deliberately broken checkpoint below a trained one.

"Broken" = the trained network with its weights corrupted by Gaussian noise as large as the weights
themselves, i.e. a checkpoint a real run could produce after a divergence; the good one is the same network
after a short source-only training on blobs.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.conftest import blob_split
from voxuda.api import build_component
from voxuda.engine.data import RunData
from voxuda.engine.validators import ValidationContext
from voxuda.methods.base import SourceBatch, TargetBatch


@pytest.fixture(scope="module")
def checkpoints():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    backbone = {"name": "unet3d", "widths": [8, 16]}
    method = build_component("method", {"name": "source_only", "backbone": backbone})
    train = blob_split(8, seed=11)
    optimiser = torch.optim.Adam(method.trainable_parameters(), lr=3e-3)
    for step in range(150):
        index = torch.tensor([(2 * step) % 8, (2 * step + 1) % 8])
        out = method.training_step(
            SourceBatch(train.volumes[index], train.labels[index]), TargetBatch(train.volumes[index]), step
        )
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    good = method.predictor().eval()
    broken = copy.deepcopy(good)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in broken.parameters():
            scale = parameter.abs().mean().clamp_min(1e-3)
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return good, broken


@pytest.fixture(scope="module")
def context() -> ValidationContext:
    data = RunData(
        source_train=blob_split(4, seed=1), target_train=blob_split(6, seed=2, contrast=0.7),
        source_val=blob_split(6, seed=3), target_val=blob_split(6, seed=4, contrast=0.7),
    )
    return ValidationContext(data=data, num_classes=2, batch_size=2)


VALIDATORS = ["source_val", "entropy", "agreement", "target_oracle", "target_prior", "target_agreement",
              "target_combined"]


@pytest.mark.parametrize("name", VALIDATORS)
def test_validator_ranks_broken_checkpoint_below_good(checkpoints, context, name):  # type: ignore[no-untyped-def]
    good, broken = checkpoints
    validator = build_component("validator", name)
    with torch.no_grad():
        assert validator.score(good, context) > validator.score(broken, context)
