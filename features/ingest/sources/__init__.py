"""Data sources; each implements ``features.ingest.batch.Source``."""
