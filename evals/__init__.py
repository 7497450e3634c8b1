"""Evaluation suite: datasets, metrics, runner and benchmarks."""
