"""Load tests (sipp scenarios and their runner) and micro-benchmarks."""
