"""Benchmark suites shipped with voxuda (TOML package data); see docs/benchmark.md for the format."""
