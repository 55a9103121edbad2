"""Benchmarks: each module drives the real system from outside and prints a table (python -m bench.NAME)."""
