"""videoai."""
