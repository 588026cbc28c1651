"""Benchmarks of the toolkit (`make bench`); not part of the test suite, which runs them once as a smoke test."""
