"""Micro-benchmarks (pytest-benchmark): ``pytest bench/micro --benchmark-only``."""
