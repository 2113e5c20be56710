"""The command line (composition root: the only place that may import every package)."""
