"""Batched, no-grad prediction with the optional test-time input transform (denoiser, contrast inversion),
and the optional test-time orientation average.

Shared by evaluation and the validators so that model selection sees exactly the input evaluation sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from voxuda.engine.run_config import TEST_TIME_ORIENTATIONS

InputTransform = Callable[[Tensor], Tensor]


class OrientationAveraged(nn.Module):
    """A predictor whose output is the log of its softmax averaged over orientations of the input.

    Each orientation is applied to the input and undone on the output, so every view predicts the same
    voxels; the log of the mean probability is returned so that callers' ``softmax`` and ``argmax`` (which
    treat the output as logits) see the averaged probabilities. Why: a network's errors on noisy input
    differ between views that the missing wedge cannot tell apart, and their mean is a label-free,
    training-free readout (test-time augmentation); only wedge-preserving views are averaged by default.
    """

    def __init__(self, predictor: nn.Module, orientations: str = "wedge") -> None:
        super().__init__()
        from voxuda.methods.augment import orientation_set

        self.predictor = predictor
        self.orientations = orientation_set((1, 1, 1), orientations)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        total: Tensor | None = None
        for view in self.orientations:
            probs = view.invert(self.predictor(view.apply(x)).float().softmax(dim=1))
            total = probs if total is None else total + probs
        assert total is not None
        return (total / len(self.orientations)).clamp_min(1e-12).log()


def with_test_time_orientations(predictor: nn.Module, orientations: str) -> nn.Module:
    """``predictor`` itself for ``"none"``, else :class:`OrientationAveraged` over ``orientations``."""
    if orientations not in TEST_TIME_ORIENTATIONS:
        raise ValueError(f"test-time orientations must be one of {', '.join(TEST_TIME_ORIENTATIONS)}, "
                         f"got {orientations!r}")
    return predictor if orientations == "none" else OrientationAveraged(predictor, orientations)


def make_input_transform(
    denoiser: InputTransform | None = None, invert: bool = False
) -> InputTransform | None:
    """Compose contrast inversion (first) and a denoiser; ``None`` when there is nothing to do."""
    if denoiser is None and not invert:
        return None

    def transform(x: Tensor) -> Tensor:
        if invert:
            x = -x
        if denoiser is not None:
            x = denoiser(x)
        return x

    return transform


@torch.no_grad()
def iter_probabilities(
    predictor: nn.Module,
    volumes: Tensor,
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
    input_transform: InputTransform | None = None,
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(start, probs)`` per batch: softmax ``(n, K, D, H, W)`` on the CPU, predictor in eval mode."""
    was_training = predictor.training
    predictor.eval()
    try:
        for start in range(0, volumes.shape[0], batch_size):
            x = volumes[start:start + batch_size].to(device)
            if input_transform is not None:
                x = input_transform(x)
            yield start, predictor(x).float().softmax(dim=1).cpu()
    finally:
        predictor.train(was_training)


def predict_labels(
    predictor: nn.Module,
    volumes: Tensor,
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
    input_transform: InputTransform | None = None,
    decision: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Label maps ``(N, D, H, W)`` for all ``volumes``: argmax, or ``decision(probs)`` (e.g. a foreground
    threshold calibrated to a prior, :mod:`voxuda.engine.decision`)."""
    parts = [
        probs.argmax(dim=1) if decision is None else decision(probs)
        for _, probs in iter_probabilities(
            predictor, volumes, batch_size=batch_size, device=device, input_transform=input_transform
        )
    ]
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)
