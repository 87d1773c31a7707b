"""The aligner contract: a label-free transform of input volumes, fitted once on unlabelled train splits.

An aligner maps volumes of one domain towards the appearance of the other *before* any network sees them,
in training (both domains), evaluation and ``voxuda segment``. It never sees labels. Volumes are
``(N, C, D, H, W)`` float32 tensors already normalised the way ``[data] normalization`` says; an aligner
returns volumes normalised the same way again (:attr:`Aligner.normalization`, set by whoever builds it), so
that what the network sees keeps the statistics it was trained on.

Stateful aligners (``needs_fit``) are fitted on the unlabelled train splits of source and target, and their
fitted statistics are plain JSON (:meth:`Aligner.state`), recorded in ``run.json`` and loaded again by
evaluation and segmentation (:meth:`Aligner.load_state`), so a model is always used with the statistics it was
trained with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from voxuda.data.transforms import Normalization, normalize

__all__ = ["Aligner", "Domain", "DOMAINS", "check_volumes", "renormalize"]

Domain = Literal["source", "target"]
DOMAINS: tuple[str, ...] = ("source", "target")


def check_volumes(x: Tensor, who: str) -> Tensor:
    """``x`` as float32 ``(N, C, D, H, W)``; anything else is a caller's mistake worth one clear line."""
    if x.ndim != 5:
        raise ValueError(f"{who}: expected volumes (N, C, D, H, W), got shape {tuple(x.shape)}")
    return x.to(torch.float32)


def renormalize(x: Tensor, method: Normalization) -> Tensor:
    """Each volume of ``(N, C, D, H, W)`` normalised over its own voxels, exactly as the datasets do it."""
    if method == "none":
        return x
    return torch.stack([normalize(v, method) for v in x]) if len(x) else x


class Aligner(ABC):
    """A label-free input transform; see the module docstring for the contract.

    ``needs_fit``: whether :meth:`fit` must run (or :meth:`load_state` be given a fitted state) before
    :meth:`apply`. ``normalization``: how :meth:`apply` re-normalises its output (the data's normalisation).
    """

    name: str = "aligner"
    needs_fit: bool = False
    normalization: Normalization = "zscore"

    def fit(self, source: Tensor, target: Tensor) -> None:  # noqa: B027 - stateless aligners need no fit
        """Measure whatever the aligner needs on unlabelled, normalised source and target volumes."""

    @abstractmethod
    def apply(self, x: Tensor, domain: Domain) -> Tensor:
        """``(N, C, D, H, W)`` volumes of ``domain`` -> aligned volumes of the same shape (float32)."""

    def state(self) -> dict[str, Any]:
        """The fitted statistics as plain JSON (empty for a stateless aligner)."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore statistics written by :meth:`state` (a stateless aligner accepts only an empty state)."""
        if state:
            raise ValueError(f"aligner {self.name!r} is stateless but was given a state with {sorted(state)}")

    def __call__(self, x: Tensor, domain: Domain = "target") -> Tensor:
        return self.apply(x, domain)
