"""Evaluation: metrics (and, in time, the mvfm-eval runner)."""
