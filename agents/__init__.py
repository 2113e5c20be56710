"""Anomaly detection and the LLM/offline explainer over recorded evidence (read-only)."""
