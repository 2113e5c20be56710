"""Ingestion, validation, feature computation, labels and Feast helpers."""
