"""Benchmark and ablation suites: run every method of a suite, then write tables and plots.

Layers, one job each: :mod:`.suite` (TOML suites composed from registered names, expanded into runs),
:mod:`.engine` (the only module that talks to the trainer and evaluator), :mod:`.runner` (run folders,
``done`` markers, resume, warm starts), :mod:`.results` (aggregation over seeds, gap closed, selection
regret), :mod:`.tables` (CSV/JSON/Markdown), :mod:`.plots` (PNG figures) and :mod:`.io` (atomic writes).
Importing this package is light; torch is imported only when a run starts.
"""
