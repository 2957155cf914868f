"""Benchmarks: contenders side by side in one run, results recorded as JSON in bench/results/."""
