"""The shipped demo: model file, demo bag generator and the ``make demo`` runner."""
