"""voxuda plugin: entropy-based adaptation methods for 3D segmentation.

- ``entropy_min``: supervised source loss + minimisation of the voxel-wise prediction entropy on the target
  (the MinEnt baseline of Vu et al. 2019, in 3D).
- ``advent``: ADVENT (Vu et al. 2019) in 3D: a fully convolutional 3D discriminator aligns the *weighted
  self-information maps* ``-p log p`` of source and target predictions, plus (optionally) direct entropy
  minimisation.

Registration passes string references only, so voxuda loading this plugin imports neither torch nor the
method modules.
"""

from voxuda import hookimpl
from voxuda.hookspecs import RegisterFn

VOXUDA_PLUGIN_API_VERSION = "1.0"


@hookimpl
def voxuda_register_methods(register: RegisterFn) -> None:
    register(
        "entropy_min",
        factory="voxuda_entropy.entropy_min:EntropyMin",
        config="voxuda_entropy.entropy_min:EntropyMinConfig",
        summary="entropy minimisation on target predictions (MinEnt, Vu et al. 2019), 3D",
    )
    register(
        "advent",
        factory="voxuda_entropy.advent:Advent",
        config="voxuda_entropy.advent:AdventConfig",
        summary="ADVENT (Vu et al. 2019): adversarial alignment of 3D self-information maps + MinEnt",
    )
