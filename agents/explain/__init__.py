"""Explanations of decisions, anomalies and the market: offline narrative, LLM agent, guard."""
