"""An example voxuda plugin: registers the ``median`` denoiser.

Registration passes string references only, so importing this module (which voxuda does when it loads
plugins) stays cheap; scipy and torch are imported when the denoiser is built.
"""

from voxuda import hookimpl
from voxuda.hookspecs import RegisterFn

VOXUDA_PLUGIN_API_VERSION = "1.0"


@hookimpl
def voxuda_register_denoisers(register: RegisterFn) -> None:
    register(
        "median",
        factory="voxuda_plugin_example.median:MedianDenoiser",
        config="voxuda_plugin_example.median:MedianDenoiserConfig",
        summary="3D median filter: robust to impulse noise (gold beads, hot pixels)",
    )
