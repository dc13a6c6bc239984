"""Benchmarks (run from the repository root: `python -m benchmarks.NAME`).

A regular package, not a namespace one: Opacus 1.6 installs a top-level `benchmarks` package into
site-packages, which would otherwise shadow this folder.
"""
