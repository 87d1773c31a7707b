"""Adaptation methods. The contract every method follows is in :mod:`voxuda.methods.base`."""
