"""ADVENT's fully convolutional discriminator, in 3D.

It lives in voxuda core as :class:`voxuda.methods.discriminator.OutputDiscriminator3D`, because DANN and
Vox-UDA can align the output space with it too (``discriminator_input = "output"``); this module keeps the
plugin's name for it.
"""

from __future__ import annotations

from voxuda.plugin_api import OutputDiscriminator3D as AdventDiscriminator3D

__all__ = ["AdventDiscriminator3D"]
