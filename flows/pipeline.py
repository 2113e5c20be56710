"""Prefect flow ``pipeline``: the whole chain on the bundled sample (what `make run` executes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from features.ingest.store import MarketStore
from flows.backtest import backtest_flow
from flows.explain import explain_flow
from flows.features import features_flow
from flows.ingest import ingest_flow
from flows.monitor import monitor_flow
from flows.trade import trade_flow
from flows.train import train_flow
from models.training import span_rows, table_rows
from sextant.settings import load_settings

__all__ = ["pipeline_flow"]

BACKTEST_COLUMNS = ("total_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "dsr")


@task(name="data-status", cache_policy=NO_CACHE)
def data_status(home: str | None = None) -> list[dict[str, Any]]:
    """Coverage of the market store after ingestion."""
    settings = load_settings(**({"home": Path(home)} if home else {}))
    with MarketStore(settings.paths.market_db, read_only=True) as store:
        return [c.to_json() for c in store.coverage()]


@flow(name="pipeline")
def pipeline_flow(home: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Ingest the sample, report the store, build + materialize features, train, promote, decide
    the latest bar on the paper account, monitor the bars for anomalies and drift, explain the
    decisions, backtest."""
    ingested = ingest_flow(source="sample", home=home)
    status = data_status(home)
    built = features_flow(home=home)
    trained = train_flow(quick=True, home=home)
    # after train, not right after features: a fresh home has champions only once trained and
    # promoted (the sample ends in 2024, so by the clock its bar is decided STALE_FEATURES, flat)
    traded = trade_flow(home=home)
    monitored = monitor_flow(home=home)
    explained = explain_flow(home=home)
    study = backtest_flow(home=home)
    return {
        "ingest": ingested,
        "status": status,
        "features build": built["build"]["views"],
        "features materialize": built["materialize"],
        "evaluation spans": span_rows(trained["trained"]),
        "train (out-of-fold, calibrated; per span)": [
            row for report in trained["trained"] for row in table_rows(report)
        ],
        "train (ONNX)": [_onnx_row(r) for r in trained["trained"]],
        "promote (one-sided tests on the selection span)": [
            {k: d[k] for k in ("family", "promoted", "reason", "detail", "challenger_version")}
            for d in trained["promotions"]
        ],
        "trade (paper account, latest bar)": [
            {
                "bar": traded["bar"],
                "account": traded["account"],
                "actions": ", ".join(f"{a} {n}" for a, n in sorted(traded["actions"].items())),
                "equity": traded["equity"],
                "trading_state": traded["trading_state"],
            }
        ],
        "monitor (anomalies found, `sextant anomalies` lists them)": [
            {"kind": kind, "found": count} for kind, count in monitored["by_kind"].items()
        ]
        or [{"kind": "-", "found": 0}],
        "explain (latest decisions; `sextant explain ID`, `sextant chat`)": explained
        or [{"decision": "-", "summary": "no decision to explain"}],
        "backtest (reported period " + list(study["periods"].values())[-1] + ")": [
            {"strategy": name, **{k: round(float(m[k]), 4) for k in BACKTEST_COLUMNS}}
            for name, m in study["metrics"].items()
        ],
        "backtest report": [
            {
                "html": study["report_html"],
                "mlflow_run": study["run_id"],
                **study["chosen"],
                "dsr_trials": study["trial_count"]["n_trials"],
                "no_champion": ",".join(study["absent"]) or "-",
            }
        ],
    }


def _onnx_row(report: dict[str, Any]) -> dict[str, Any]:
    parity = report["parity"]
    return {
        "family": report["family"],
        "version": report["model_version"],
        "parity_max_err": parity.get("max_abs_err", parity.get("max_rel_err")),
        "onnx_p99_ms": round(report["latency_ms"]["p99"], 4),
        "seconds": round(report["seconds"], 1),
    }
