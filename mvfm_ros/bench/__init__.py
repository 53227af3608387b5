"""Benchmarks (``mvfm-bench``) and export (``mvfm-export``)."""
