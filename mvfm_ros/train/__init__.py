"""Training: the paper's losses (and, in time, the mvfm-train trainer)."""
