"""Benchmark scripts (`python benchmarks/NAME.py`); the tests import the planted benchmark's
dataset builder from here as `benchmarks.planted`."""
