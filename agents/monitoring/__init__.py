"""Detectors of market anomalies, data-quality problems and model drift, and the monitor that
runs them over stored bars and records what they find (docs/monitoring.md)."""
