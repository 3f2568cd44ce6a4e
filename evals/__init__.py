"""Offline evaluation and benchmarks over the same search service the server uses."""
