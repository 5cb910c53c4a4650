"""Measured comparisons (not timed tests): each script compares A and B side by side in one
run on one machine, prints a table and the ratios, and writes its numbers as JSON
(``benchmarks/results/<name>.json`` by default). See docs/benchmarks.md."""
