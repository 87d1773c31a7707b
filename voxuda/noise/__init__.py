"""Noise models applied to source volumes (Vox-UDA's noise generation module and its variants).

Every model follows the protocol :class:`voxuda.protocols.NoiseModel`: ``fit`` on target volumes (a
no-op where nothing is estimated), then ``model(x, generator)`` returns a noisy copy of ``x``. Models are
built by name through the registry (``build_component("noise_model", "ngm")``), never imported directly
by methods.
"""
