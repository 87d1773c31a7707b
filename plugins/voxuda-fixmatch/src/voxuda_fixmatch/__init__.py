"""voxuda plugin: FixMatch (Sohn et al. 2020) self-training for 3D segmentation UDA.

Registration passes string references only, so loading this plugin imports neither torch nor the method.
"""

from voxuda import hookimpl
from voxuda.hookspecs import RegisterFn

VOXUDA_PLUGIN_API_VERSION = "1.0"


@hookimpl
def voxuda_register_methods(register: RegisterFn) -> None:
    register(
        "fixmatch",
        factory="voxuda_fixmatch.method:FixMatch",
        config="voxuda_fixmatch.method:FixMatchConfig",
        summary="FixMatch (Sohn et al. 2020): weak-view pseudo-labels, consistency on a strong 3D view",
    )
