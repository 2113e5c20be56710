"""Prefect flow ``trade``: decide every configured symbol at the latest bar on the paper account.

Runs after ``features`` (each new bar materialized). `DecisionEngine.decide` brings the account's
paper book up to the bar from the market store, submits the approved targets and records the
decisions, the book, its equity marks and the gate in one transaction; the decisions store's WAL
is then checkpointed off the decision path. A market store held by an ingest
(SourceUnavailableError) is retried; anything else fails at once.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.ingest import retry_if_transient
from serving.decisions_store import DecisionsStore
from serving.engine import DecisionEngine
from sextant.settings import Settings, load_settings

__all__ = ["checkpoint_decisions", "decide_bar", "trade_flow"]


def _settings(home: str | None) -> Settings:
    return load_settings(**({"home": Path(home)} if home else {}))


@task(name="decide-bar", retry_condition_fn=retry_if_transient, cache_policy=NO_CACHE)
def decide_bar(
    home: str | None = None,
    account: str | None = None,
    symbols: list[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Decide the symbols at the latest bar close by ``now`` on the account's paper book."""
    engine = DecisionEngine.from_settings(_settings(home), account=account)
    try:
        batch = engine.decide(tuple(symbols) if symbols else None, now=now)
        broker, gate = engine.account_state()
    finally:
        engine.close()
    return {
        "bar": batch.ts.isoformat(),
        "account": engine.account,
        "decided": len(batch.made),
        "already_recorded": len(batch.records) - len(batch.made),
        "actions": dict(Counter(str(r["action"]) for r in batch.records)),
        "equity": None if broker is None else broker.equity,
        "trading_state": str(gate.state),
        "model_versions": dict(batch.versions),
        "decision_ids": [str(r["id"]) for r in batch.records],
    }


@task(name="checkpoint-decisions", cache_policy=NO_CACHE)
def checkpoint_decisions(home: str | None = None) -> int:
    """Fold the decisions store's WAL into its file while no bar is being decided."""
    with DecisionsStore.open(_settings(home).paths.decisions_db) as store:
        return store.checkpoint()


@flow(name="trade")
def trade_flow(
    home: str | None = None,
    account: str | None = None,
    symbols: list[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Decide the latest bar on the paper account (after `features`), then checkpoint."""
    settings = _settings(home)
    decide = decide_bar.with_options(
        retries=settings.task_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.task_retry_delay_s),
    )
    summary = decide(home, account, symbols, now)
    return {**summary, "wal_pages_left": checkpoint_decisions(home)}
