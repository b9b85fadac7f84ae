"""Benchmarks that regenerate BENCHMARKS.md and figures/*.png (``python -m benchmarks.run_all``)."""
