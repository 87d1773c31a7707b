"""Batched, no-grad prediction with the optional test-time input transform (denoiser, contrast inversion).

Shared by evaluation and the validators so that model selection sees exactly the input evaluation sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

InputTransform = Callable[[Tensor], Tensor]


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
