"""Bilateral denoisers: the classic filter and Vox-UDA's improved bilateral filter (IBF)."""

from __future__ import annotations

from typing import Any, Literal, get_args

import attrs
import torch

import voxuda.ops as ops
from voxuda.checks import non_negative_int, one_of, positive
from voxuda.denoisers._batch import check_batch
from voxuda.ops.backends import BackendChoice
from voxuda.ops.guides import GUIDES, compute_guide5

RangeScale = Literal["absolute", "guide_std"]
RANGE_SCALES: tuple[str, ...] = get_args(RangeScale)


def _effective_sigma_range(guide: torch.Tensor, sigma_range: float, range_scale: str) -> list[float]:
    """Per-volume sigma_r: as given ("absolute") or times the std of the guide magnitude ("guide_std").

    With "absolute" the meaning of sigma_r depends on the intensity scale of the data (z-scored volumes in
    the paper); "guide_std" makes it scale-free.  Returned per batch item.
    """
    if range_scale == "absolute":
        return [sigma_range] * guide.shape[0]
    mag = guide.double().pow(2).sum(dim=1).sqrt()
    stds = mag.flatten(1).std(dim=1)
    # a flat volume has std 0: fall back to 1 so sigma stays positive (the filter is then an identity anyway)
    return [sigma_range * (float(s) if float(s) > 0 else 1.0) for s in stds]


def _filter_items(
    x: torch.Tensor, guide: torch.Tensor, cfg: BilateralConfig, sigmas: list[float], backend: BackendChoice
) -> torch.Tensor:
    """Run the op once when sigma is shared, else once per batch item with its own sigma."""
    if all(s == sigmas[0] for s in sigmas):
        return ops.bilateral3d(x, guide=guide, sigma_range=sigmas[0], radius=cfg.radius,
                               sigma_spatial=cfg.sigma_spatial, backend=backend)
    return torch.cat(
        [
            ops.bilateral3d(x[i : i + 1], guide=guide[i : i + 1], sigma_range=s, radius=cfg.radius,
                            sigma_spatial=cfg.sigma_spatial, backend=backend)
            for i, s in enumerate(sigmas)
        ]
    )


def _backend_name(_inst: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be 'auto' or a backend name, got {value!r}")


# Field factories shared by the two configs: one definition of each parameter, while each class keeps
# its own field order and help texts (``voxuda describe`` prints them in declaration order).  ``Any``:
# attrs.field returns a descriptor that the class decorator turns into the annotated attribute.
def _radius_field() -> Any:
    return attrs.field(default=1, validator=non_negative_int,
                       metadata={"help": "window half-width in voxels"})


def _sigma_spatial_field() -> Any:
    return attrs.field(default=120.0, validator=positive,
                       metadata={"help": "spatial sigma in voxels (120: flat in a 3^3 window)"})


def _sigma_range_field(units: str) -> Any:
    return attrs.field(default=1.2, validator=positive,
                       metadata={"help": f"range sigma in {units} units (see range_scale)"})


def _range_scale_field(what: str) -> Any:
    helptext = f"'absolute': sigma_range as given (paper); 'guide_std': times {what}"
    return attrs.field(default="absolute", validator=one_of(*RANGE_SCALES), metadata={"help": helptext})


def _backend_field() -> Any:
    return attrs.field(default="auto", validator=_backend_name,
                       metadata={"help": "op backend: 'auto', 'torch', 'numba', 'cupy', ..."})


@attrs.define(kw_only=True)
class BilateralDenoiserConfig:
    """Classic 3D bilateral filter (range kernel on intensities)."""

    radius: int = _radius_field()
    sigma_spatial: float = _sigma_spatial_field()
    sigma_range: float = _sigma_range_field("intensity")
    range_scale: RangeScale = _range_scale_field("each volume's std")
    backend: str = _backend_field()


@attrs.define(kw_only=True)
class ImprovedBilateralDenoiserConfig:
    """Vox-UDA's IBF: intensities averaged, weights from a structure guide (gradient of the Laplacian)."""

    radius: int = _radius_field()
    sigma_spatial: float = _sigma_spatial_field()
    sigma_range: float = _sigma_range_field("guide")
    guide: str = attrs.field(
        default="laplacian_gradient",
        validator=one_of(*GUIDES),
        metadata={
            "help": "vector compared by the range kernel: laplacian_gradient | sobel_gradient | intensity"
        },
    )
    range_scale: RangeScale = _range_scale_field("each volume's guide std")
    backend: str = _backend_field()


#: the settings both bilateral denoisers read
BilateralConfig = BilateralDenoiserConfig | ImprovedBilateralDenoiserConfig


class _BilateralBase:
    """Shared call path of the two bilateral denoisers.

    The op backend is chosen when the denoiser is built, not per call: ``backend_choice`` resolves a named
    backend at construction (an unknown or unavailable one fails there) and ``"auto"`` on the first input,
    again only when the kind of input changes (device, dtype, shape without the batch; see
    :class:`~voxuda.ops.backends.BackendChoice`).  :attr:`op_backend` is the registered name it chose,
    which ``run.json`` records.
    """

    name = "bilateral_base"
    guide_name = "intensity"

    def __init__(self, config: BilateralConfig) -> None:
        self.config = config
        self.backend_choice = BackendChoice(config.backend)

    @property
    def op_backend(self) -> str | None:
        """Registered name of the op backend this denoiser filters on; None while "auto" has seen no input."""
        return self.backend_choice.name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = check_batch(x, self.name)
        requested = self.config.backend
        if self.backend_choice.requested != requested:  # the (mutable) config was edited after the build
            self.backend_choice = BackendChoice(requested)
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        with torch.no_grad():
            guide = compute_guide5(work, self.guide_name).contiguous()
            sigmas = _effective_sigma_range(guide, self.config.sigma_range, self.config.range_scale)
            out = _filter_items(work, guide, self.config, sigmas, self.backend_choice)
        return out.to(x.dtype)


class BilateralDenoiser(_BilateralBase):
    """Classic bilateral filter on intensities; the "NGM + classic bilateral" ablation of the paper."""

    name = "bilateral"

    def __init__(self, config: BilateralDenoiserConfig | None = None) -> None:
        super().__init__(config if config is not None else BilateralDenoiserConfig())


class ImprovedBilateralDenoiser(_BilateralBase):
    """Improved bilateral filter (IBF) applied to target volumes in front of the teacher."""

    name = "improved_bilateral"

    def __init__(self, config: ImprovedBilateralDenoiserConfig | None = None) -> None:
        cfg = config if config is not None else ImprovedBilateralDenoiserConfig()
        super().__init__(cfg)
        self.guide_name = cfg.guide
