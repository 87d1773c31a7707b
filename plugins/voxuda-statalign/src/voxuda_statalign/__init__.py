"""voxuda plugin: adaptation by aligning feature statistics, for 3D segmentation.

- ``adabn``: AdaBN (Li et al. 2016/2018): train on source with BatchNorm3d, then replace every BatchNorm's
  running statistics by statistics re-estimated on target volumes, so evaluation normalises target
  features with target statistics.
- ``coral``: Deep CORAL (Sun and Saenko 2016): align the second-order statistics (covariances) of source
  and target features at a backbone tap, per voxel or per pooled volume.

Registration passes string references only, so loading this plugin imports neither torch nor the methods.
"""

from voxuda import hookimpl
from voxuda.hookspecs import RegisterFn

VOXUDA_PLUGIN_API_VERSION = "1.0"


@hookimpl
def voxuda_register_methods(register: RegisterFn) -> None:
    register(
        "adabn",
        factory="voxuda_statalign.adabn:AdaBN",
        config="voxuda_statalign.adabn:AdaBNConfig",
        summary="AdaBN: source training with BatchNorm3d; BN statistics re-estimated on target to evaluate",
    )
    register(
        "coral",
        factory="voxuda_statalign.coral:DeepCORAL",
        config="voxuda_statalign.coral:DeepCORALConfig",
        summary="Deep CORAL (Sun and Saenko 2016): match source/target feature covariances at a 3D tap",
    )
