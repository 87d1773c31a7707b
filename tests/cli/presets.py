"""Preset files the CLI tests write: defined once, so the lock and simulate tests simulate the same data."""

#: the tiny preset cut to 6 samples (source 2 train + 1 val, one target 2 train + 1 test): seconds to simulate
SMALL_SHIFT_PRESET = """
base = "tiny"
name = "small_shift"
[source]
splits = { train = 2, val = 1 }
[[targets]]
name = "purified_thin_ice"
splits = { train = 2, test = 1 }
"""
