"""Benchmarks: long measurements, run on their own (not part of the test suite)."""
