"""Benchmarks: each script measures a path against its physical baseline in the same run."""
