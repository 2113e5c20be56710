"""Read-only tools over recorded evidence (decisions, anomalies, models, market, portfolio)."""
