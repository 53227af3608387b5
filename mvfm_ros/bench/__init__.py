"""Benchmarks (``mvfm-bench``, its soak) and export (``mvfm-export``)."""

DEMO = 'demo'  # the --backbone that names the demo model's architecture
