"""Market and alternative-data ingestion: sources, validation, the DuckDB market store."""
