"""Benchmark and ablation suites: run every method of a suite, then write tables and plots.

Layers, one job each: :mod:`.suite` (TOML suites composed from registered names, expanded into runs),
:mod:`.engine` (the only module that talks to the trainer and evaluator), :mod:`.runner` (run folders,
``done`` markers, resume, warm starts, evaluate-only and shared runs), :mod:`.results` (aggregation over
seeds and networks, gap closed, selection regret, paired differences, per-target summaries),
:mod:`.stats` (paired t intervals), :mod:`.diagnostics` (what a run's logs say: discriminator, drift,
pseudo-labels, selection steps), :mod:`.tables` (CSV/JSON/Markdown), :mod:`.report` (multi-suite documents
by track, gap anatomy), :mod:`.plots` (PNG figures) and :mod:`.io` (atomic writes).
Importing this package is light; torch is imported only when a run starts.
"""
