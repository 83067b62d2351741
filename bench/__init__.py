"""Benchmarks (make bench). Not tests: they print numbers and ratios."""
