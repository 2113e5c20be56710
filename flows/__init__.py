"""Prefect flows: orchestration only, no business logic."""
