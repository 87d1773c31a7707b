"""Re-estimating BatchNorm running statistics on other data (the core of AdaBN).

Each BatchNorm layer's ``running_mean``/``running_var`` are reset and re-accumulated with ``momentum=None``
(PyTorch's cumulative average), so after ``k`` batches they are the plain mean of the ``k`` per-batch
statistics, with no dependence on the order of batches or on the momentum used during training. Only the
BatchNorm layers run in training mode during the pass; dropout and friends stay in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norm_layers(module: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``module`` (any dimensionality) with running statistics, in module order."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def reestimate_bn_statistics(module: nn.Module, batches: Iterable[Tensor]) -> int:
    """Replace the running statistics of every BatchNorm in ``module`` by those of ``batches``.

    ``module(x)`` is called for each batch (its output is ignored, so a backbone returning
    ``(logits, features)`` works). Returns the number of batches used; with none, the statistics are left
    untouched. The module's train/eval flags and the layers' momenta are restored afterwards.
    """
    layers = batch_norm_layers(module)
    batches = list(batches)
    if not layers or not batches:
        return 0
    modes = [m.training for m in module.modules()]
    momenta = [layer.momentum for layer in layers]
    try:
        module.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
            layer.train()
        for x in batches:
            module(x)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for m, mode in zip(module.modules(), modes):
            m.training = mode
    return len(batches)


class BNStatistics(nn.Module):
    """A copy of the running statistics of a network's BatchNorm layers, saved in the method's state dict.

    Keeping the target statistics as buffers (rather than a second copy of the network) makes them travel
    with every checkpoint at the cost of a few kilobytes, so a checkpoint evaluated later in a fresh
    process still predicts with target statistics.
    """

    def __init__(self, layers: list[_BatchNorm]) -> None:
        super().__init__()
        self.count = len(layers)
        for i, layer in enumerate(layers):
            self.register_buffer(f"mean_{i}", layer.running_mean.detach().clone())
            self.register_buffer(f"var_{i}", layer.running_var.detach().clone())
        # whether the statistics belong to the current weights (cleared by every optimiser step)
        self.register_buffer("valid", torch.zeros((), dtype=torch.bool))

    def capture(self, layers: list[_BatchNorm]) -> None:
        self._check(layers)
        for i, layer in enumerate(layers):
            getattr(self, f"mean_{i}").copy_(layer.running_mean)
            getattr(self, f"var_{i}").copy_(layer.running_var)
        self.valid.fill_(True)

    def apply_to(self, layers: list[_BatchNorm]) -> None:
        self._check(layers)
        for i, layer in enumerate(layers):
            layer.running_mean.copy_(getattr(self, f"mean_{i}"))
            layer.running_var.copy_(getattr(self, f"var_{i}"))

    def _check(self, layers: list[_BatchNorm]) -> None:
        if len(layers) != self.count:
            raise ValueError(f"expected {self.count} BatchNorm layers, got {len(layers)}")
