"""The ``sextant`` command line: the composition root.

Every command imports what it needs inside its body, so ``sextant --help`` stays fast and no
layer depends on the CLI.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from sextant.contracts import FEATURE_SERVICES
from sextant.errors import SextantError

__all__ = ["app", "main"]

app = typer.Typer(
    name="sextant",
    help="ML-driven crypto trading decisions: ingest, features, models, risk-gated signals.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect the market store.", no_args_is_help=True)
app.add_typer(data_app, name="data")
features_app = typer.Typer(
    help="Build feature tables and load them into Feast.", no_args_is_help=True
)
app.add_typer(features_app, name="features")
paper_app = typer.Typer(help="Inspect a paper trading account (read-only).", no_args_is_help=True)
app.add_typer(paper_app, name="paper")


class SourceKind(StrEnum):
    sample = "sample"
    ccxt = "ccxt"
    file = "file"
    fng = "fng"
    news = "news"


class DatasetOption(StrEnum):
    candles = "candles"
    funding = "funding"
    fear_greed = "fear_greed"
    news = "news"


def _settings(**overrides: Any):  # type: ignore[no-untyped-def]
    # Every command calls this first: Prefect, MLflow and LangChain read their environment
    # (telemetry switches, Prefect's home and timeouts) when they are imported.
    from sextant.runtime import init_runtime
    from sextant.settings import load_settings

    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    init_runtime(settings)
    return settings


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float (NaN: unknown) as None: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value


def _emit_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as strict JSON (NaN and infinities as null)."""
    typer.echo(json.dumps(_strict(payload), indent=2, default=str, allow_nan=False))


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    from sextant.errors import ConfigError
    from sextant.timeutil import parse_utc

    try:
        return parse_utc(value)
    except ValueError as exc:
        raise ConfigError(f"{option} {value!r} is not an ISO date or timestamp: {exc}") from exc


@app.command()
def ingest(
    source: Annotated[
        SourceKind, typer.Option(help="Where the data comes from.")
    ] = SourceKind.sample,
    exchange: Annotated[
        str | None, typer.Option(help="ccxt exchange id (default: settings, binance).")
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", help="Replace scheme+host of every exchange REST endpoint."),
    ] = None,
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbol(s), e.g. BTC/USDT; repeatable.")
    ] = None,
    timeframe: Annotated[str | None, typer.Option(help="Bar timeframe, e.g. 1h.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO start when nothing is stored yet.")] = None,
    path: Annotated[
        Path | None, typer.Option(help="File or directory for --source file/news.")
    ] = None,
    dataset: Annotated[
        DatasetOption | None, typer.Option(help="Override the dataset (e.g. funding).")
    ] = None,
    feed: Annotated[
        list[str] | None, typer.Option("--feed", help="RSS/Atom feed URL(s) for --source news.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print machine-readable results.")
    ] = False,
) -> None:
    """Fetch, validate and store market or alternative data (idempotent, resumable)."""
    settings = _settings()
    from features.ingest.batch import Dataset
    from features.ingest.plan import IngestRequest, plan_ingest
    from features.ingest.service import ingest_source
    from features.ingest.store import MarketStore
    from sextant.cli.progress import progress_reporter

    request = IngestRequest(
        source=source.value,
        exchange=exchange,
        api_url=api_url,
        symbols=tuple(symbol or ()),
        timeframe=timeframe,
        since=_parse_time(since, "--since"),
        path=path,
        dataset=Dataset(dataset.value) if dataset else None,
        feeds=tuple(feed or ()),
    )
    results = []
    with (
        progress_reporter(enabled=not as_json) as report,
        MarketStore(settings.paths.market_db) as store,
    ):
        for unit in plan_ingest(request, settings, progress=report):
            results.extend(ingest_source(unit.source, store))
    payload = {"results": [r.to_json() for r in results]}
    if as_json:
        _emit_json(payload)
        return
    from sextant.cli.render import print_table

    print_table(
        "ingest",
        payload["results"],
        [
            "source",
            "dataset",
            "symbol",
            "timeframe",
            "rows_added",
            "rows_quarantined",
            "gaps",
            "first_ts",
            "last_ts",
        ],
    )


@data_app.command("status")
def data_status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print machine-readable coverage.")
    ] = False,
) -> None:
    """Coverage per source/symbol/timeframe: first and last timestamp, rows, gaps, quarantined."""
    settings = _settings()
    from features.ingest.store import MarketStore

    with MarketStore(settings.paths.market_db, read_only=True) as store:
        coverage = store.coverage()
    rows = [c.to_json() for c in coverage]
    if as_json:
        _emit_json({"coverage": rows})
        return
    from sextant.cli.render import print_table

    print_table(
        "market store: " + str(settings.paths.market_db),
        rows,
        list(rows[0]) if rows else ["dataset"],
    )


@data_app.command("gaps")
def data_gaps(
    symbol: Annotated[str, typer.Option(help="Symbol, e.g. BTC/USDT.")],
    timeframe: Annotated[str | None, typer.Option(help="Bar timeframe.")] = None,
    source: Annotated[
        str, typer.Option(help="Stored source label (sample, binance, file, ...).")
    ] = "sample",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List every gap (missing bars) of one stored candle series."""
    settings = _settings()
    from features.ingest.batch import Dataset
    from features.ingest.store import MarketStore

    with MarketStore(settings.paths.market_db, read_only=True) as store:
        gaps = store.gaps(Dataset.CANDLES, source, symbol, timeframe or settings.timeframe)
    rows = [
        {
            "after": g.after.isoformat(),
            "before": g.before.isoformat(),
            "missing_bars": g.missing_bars,
        }
        for g in gaps
    ]
    if as_json:
        _emit_json({"gaps": rows})
        return
    from sextant.cli.render import print_table

    print_table(f"gaps {source} {symbol}", rows, ["after", "before", "missing_bars"])


@features_app.command("build")
def features_build(
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbol(s); default: settings.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Recompute even when the inputs are unchanged.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compute the feature tables (one parquet per Feast view) from the market store."""
    settings = _settings()
    from features.build import build_features

    report = build_features(settings, symbols=tuple(symbol) if symbol else None, force=force)
    payload = report.to_json()
    if as_json:
        _emit_json(payload)
        return
    from sextant.cli.render import print_table

    print_table(
        f"features build ({report.seconds:.1f} s; rebuilt: {', '.join(report.rebuilt) or 'none'})",
        payload["views"],
        ["view", "rows", "rows_added", "seconds"],
    )


@features_app.command("materialize")
def features_materialize(
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Apply the Feast repo and materialize new feature rows into the online store."""
    settings = _settings()
    from features.feast_store import materialize

    reports = materialize(settings)
    rows = [r.to_json() for r in reports]
    if as_json:
        _emit_json({"views": rows})
        return
    from sextant.cli.render import print_table

    print_table("features materialize", rows, list(rows[0]) if rows else ["view"])


@features_app.command("online")
def features_online(
    service: Annotated[
        str, typer.Option("--service", help="Feature service, e.g. xgb_direction_v1.")
    ] = FEATURE_SERVICES["xgb"],
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbol(s); default: settings.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read a service's latest features from the online store, with the bar close they describe."""
    settings = _settings()
    from features.feast_store import FeastStore

    symbols = tuple(symbol) if symbol else settings.symbols
    vectors = FeastStore(settings).online_vectors(service, symbols)
    payload = vectors.to_json()
    if as_json:
        _emit_json(payload)
        return
    from sextant.cli.render import print_table

    rows = [
        {"feature": name, **{r["symbol"]: r["values"][name] for r in payload["rows"]}}
        for name in payload["features"]
    ]
    as_of = ", ".join(
        f"{s} {t:%Y-%m-%d %H:%M}" for s, t in zip(symbols, vectors.as_of, strict=True)
    )
    print_table(f"{service} (as of: {as_of})", rows, ["feature", *symbols])


@app.command()
def train(
    models: Annotated[
        str, typer.Option("--models", help="Comma-separated families: garch,xgb,lstm.")
    ] = "garch,xgb,lstm",
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbol(s); default: settings.")
    ] = None,
    start: Annotated[str | None, typer.Option(help="ISO start of the training data.")] = None,
    end: Annotated[str | None, typer.Option(help="ISO end of the training data.")] = None,
    quick: Annotated[
        bool, typer.Option(help="Small but real models (few folds, trees, epochs).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Walk-forward CV, final fit, ONNX export with parity, MLflow logging, register as challenger."""
    settings = _settings()
    from models.tracking import Tracking
    from models.training import TrainConfig, train_models

    options: dict[str, Any] = {
        "families": tuple(m.strip() for m in models.split(",") if m.strip()),
        "symbols": tuple(symbol or ()),
        "start": _parse_time(start, "--start"),
        "end": _parse_time(end, "--end"),
    }
    config = TrainConfig.quick(**options) if quick else TrainConfig(**options)
    reports = train_models(settings, config, Tracking.from_settings(settings))
    payload = {"models": [r.to_json() for r in reports]}
    if as_json:
        _emit_json(payload)
        return
    from models.spans import SPAN_NAMES
    from models.training import TABLE_COLUMNS, span_rows, table_rows
    from sextant.cli.render import print_table

    print_table("evaluation spans", span_rows(payload["models"]), ["family", *SPAN_NAMES])
    rows = [row for report in payload["models"] for row in table_rows(report)]
    print_table("train (out-of-fold, calibrated; per span)", rows, list(TABLE_COLUMNS))


@app.command()
def promote(
    models: Annotated[
        str, typer.Option("--models", help="Comma-separated families.")
    ] = "garch,xgb,lstm",
    confidence: Annotated[
        float, typer.Option(help="Level of the gate's one-sided tests on the selection span.")
    ] = 0.95,
    require_baseline: Annotated[
        bool,
        typer.Option(help="A direction model must also beat the simple past-return baseline."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Move `champion` to each challenger that passes the gate; every decision goes to the ledger."""
    settings = _settings()
    from models.registry import PromotionPolicy
    from models.registry import promote as run_gate
    from models.tracking import Tracking

    families = tuple(m.strip() for m in models.split(",") if m.strip())
    decisions = run_gate(
        Tracking.from_settings(settings),
        settings.paths.home,
        families,
        PromotionPolicy(confidence=confidence, require_simple_baseline=require_baseline),
    )
    payload = {"decisions": [d.to_json() for d in decisions]}
    if as_json:
        _emit_json(payload)
        return
    from sextant.cli.render import print_table

    print_table(
        "promote",
        payload["decisions"],
        ["family", "promoted", "reason", "detail", "challenger_version", "champion_version"],
    )


@app.command()
def backtest(
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbol(s); default: settings.")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="ISO start (bar open) of the history to replay.")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="ISO end (bar open) of the history to replay.")
    ] = None,
    fuser_mode: Annotated[
        str | None,
        typer.Option(
            help="weighted, agreement or ml_gated; default: chosen on the selection period."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Replay the decision engine over out-of-fold predictions: fused strategy and baselines."""
    settings = _settings()
    from models.backtest import run_backtest_study
    from models.tracking import Tracking

    report = run_backtest_study(
        settings,
        Tracking.from_settings(settings),
        symbols=tuple(symbol) if symbol else None,
        start=_parse_time(start, "--start"),
        end=_parse_time(end, "--end"),
        fuser_mode=fuser_mode,
    )
    payload = report.to_json()
    if as_json:
        _emit_json(payload)
        return
    from sextant.cli.render import print_table

    keys = (
        "total_return",
        "annualized_return",
        "sharpe",
        "sortino",
        "max_drawdown",
        "win_rate",
        "profit_factor",
        "dsr",
    )
    rows = [{"strategy": name, **{k: m.get(k) for k in keys}} for name, m in report.metrics.items()]
    print_table(
        f"backtest, reported period {list(report.periods.values())[-1]}", rows, ["strategy", *keys]
    )
    typer.echo(f"chosen on the selection period: {report.chosen}; report: {report.report_html}")
    typer.echo(
        f"deflated Sharpe ratio trials: {report.trial_count['n_trials']} "
        f"({report.trial_count}); families without a champion: {', '.join(report.absent) or 'none'}"
    )


@app.command()
def decide(
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbol(s); default: settings.")
    ] = None,
    account: Annotated[
        str | None, typer.Option(help="Decisions store account (default: SEXTANT_PAPER_ACCOUNT).")
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="ISO time to decide at (default: now); the latest bar close.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run the decision engine in process once: online features, champions, risk gate, the paper
    book, record (a symbol already decided at the bar prints its stored record)."""
    settings = _settings()
    from serving.engine import DecisionEngine

    engine = DecisionEngine.from_settings(settings, account=account)
    try:
        batch = engine.decide(tuple(symbol) if symbol else None, now=_parse_time(at, "--at"))
    finally:
        engine.close()
    records = list(batch.records)
    replayed = len(records) - len(batch.made)
    if replayed:  # one decision per account, symbol and bar: the stored record stands
        typer.echo(
            f"{replayed} already decided at {batch.ts.isoformat()}: stored records", err=True
        )
    if as_json:
        _emit_json({"decisions": records})
        return
    from sextant.cli.render import print_table

    keys = ("symbol", "ts", "action", "price", "fused_score", "confidence", "target_fraction")
    print_table("decisions", [{k: r.get(k) for k in keys} for r in records], list(keys))
    for r in records:
        failed = [c["reason_code"] for c in r["risk_checks"] if not c["passed"]]
        typer.echo(f"{r['id']}: {r['symbol']} {r['action']}; failed checks: {failed or 'none'}")


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Interface to bind; anything but loopback exposes the service.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes, each with its own engine and metrics.")
    ] = 1,
) -> None:
    """The online decision service over HTTP (FastAPI on uvicorn): decisions, signals, models,
    the paper portfolio, explanations and chat (/v1/explain, /v1/chat), the trade-review page
    (/review), admin (SEXTANT_ADMIN_TOKEN), /healthz, /readyz, /metrics, /docs."""
    settings = _settings()
    import uvicorn

    uvicorn.run(
        "sextant.cli.service_app:app_with_explainer",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
    )


def _paper_store(settings: Any) -> Any:
    """The decisions store, read-only; None (after a message) when nothing was recorded yet."""
    from serving.decisions_store import DecisionsStore

    if not settings.paths.decisions_db.is_file():
        typer.echo(f"no paper trading recorded under {settings.paths.home} yet", err=True)
        return None
    return DecisionsStore.open(settings.paths.decisions_db, readonly=True)


@paper_app.command("status")
def paper_status(
    account: Annotated[
        str | None, typer.Option(help="Paper account (default: SEXTANT_PAPER_ACCOUNT).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Positions (units, notional at the latest close, pending orders), equity, cash, PnL, the
    trading state and gate, and the last bar of a paper account."""
    settings = _settings()
    from serving.paper_account import account_report

    name = account or settings.paper_account
    store = _paper_store(settings)
    report = None
    if store is not None:
        with store:
            report = account_report(settings, store, name)
    if report is None:
        if store is not None:
            typer.echo(f"paper account {name!r} has no recorded state yet", err=True)
        if as_json:
            _emit_json({"account": name, "recorded": False})
        return
    if as_json:
        _emit_json({**report.to_json(), "recorded": True})
        return
    from sextant.cli.render import print_table

    summary = {k: v for k, v in report.to_json().items() if k not in ("gate", "positions")}
    print_table(f"paper account {name}", [summary], list(summary))
    rows = [p.to_json() for p in report.positions]
    if rows:
        print_table("positions", rows, list(rows[0]))
    gate = report.gate
    typer.echo(
        f"gate: {gate['state']}; kill switch {'on' if gate['kill_switch'] else 'off'}; "
        f"halt reasons: {', '.join(gate['halt_reasons']) or 'none'}"
    )


@paper_app.command("history")
def paper_history(
    account: Annotated[
        str | None, typer.Option(help="Paper account (default: SEXTANT_PAPER_ACCOUNT).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="The latest N bars.")] = 48,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The account's equity curve per bar (equity, cash, realized, unrealized, fees, funding)
    and its open trades (the stored book keeps no closed trades; their PnL is in the curve)."""
    settings = _settings()
    from serving.paper_account import history_report

    name = account or settings.paper_account
    store = _paper_store(settings)
    marks: list[Any] = []
    trades: list[dict[str, Any]] = []
    if store is not None:
        with store:
            marks, trades = history_report(store, name, limit=limit)
        if not marks:
            typer.echo(f"paper account {name!r} has no equity marks yet", err=True)
    rows = [
        {
            "bar_open": m.bar_open.isoformat(),
            "equity": m.equity,
            "cash": m.cash,
            "realized": m.realized,
            "unrealized": m.unrealized,
            "fees": m.fees,
            "funding": m.funding,
        }
        for m in marks
    ]
    if as_json:
        _emit_json({"account": name, "marks": rows, "open_trades": trades})
        return
    from sextant.cli.render import print_table

    if rows:
        print_table(f"paper account {name}: equity per bar", rows, list(rows[0]))
    if trades:
        print_table("open trades", trades, list(trades[0]))


@app.command()
def monitor(
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbol(s); default: settings.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="ISO bar time to evaluate from (default: after the last run)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Stay open: run now, then after each bar close (+ --delay) until interrupted.",
        ),
    ] = False,
    bars: Annotated[
        int | None, typer.Option(min=1, help="With --follow: stop after this many runs.")
    ] = None,
    delay: Annotated[
        float, typer.Option(min=0, help="With --follow: seconds after a bar close to run.")
    ] = 30.0,
) -> None:
    """Run the anomaly and drift detectors over the stored bars and store what they find
    (what the `monitor` flow runs; a re-run over the same bars stores nothing new). With
    --follow the monitor stays open between bars (stores, references and windows kept warm)."""
    settings = _settings()
    from agents.monitoring.monitor import MonitorReport, follow_monitor, run_monitor

    def show(report: MonitorReport) -> None:
        summary = report.to_json()
        if as_json:
            _emit_json(summary)
            return
        from sextant.cli.render import print_table

        rows = [{"kind": k, "found": n} for k, n in summary["by_kind"].items()]
        print_table(
            f"monitor {summary['since'] or 'first run'} .. {summary['until']}",
            rows,
            ["kind", "found"],
        )
        typer.echo(
            f"{summary['found']} found, {summary['stored']} new; events: {len(summary['events'])}"
        )

    symbols = tuple(symbol) if symbol else None
    if not follow:
        show(run_monitor(settings, symbols=symbols, since=_parse_time(since, "--since")))
        return
    if since is not None:
        raise typer.BadParameter(
            "--since applies to one run, not to --follow", param_hint="--since"
        )
    from datetime import timedelta

    try:
        follow_monitor(
            settings, symbols=symbols, bars=bars, delay=timedelta(seconds=delay), on_report=show
        )
    except KeyboardInterrupt:
        typer.echo("monitor: stopped", err=True)


@app.command()
def anomalies(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    since: Annotated[str | None, typer.Option(help="Only bars at or after this ISO time.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind (e.g. volume_spike).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What the monitor found, newest bar first, with each statistic, threshold and evidence."""
    settings = _settings()
    from serving.decisions_store import DecisionsStore

    if not settings.paths.decisions_db.is_file():
        found: list[dict[str, Any]] = []
    else:
        with DecisionsStore.open(settings.paths.decisions_db, readonly=True) as store:
            found = store.anomalies(
                limit, kind=kind, symbol=symbol, start=_parse_time(since, "--since")
            )
    if as_json:
        _emit_json({"anomalies": found})
        return
    if not found:
        typer.echo("no anomalies recorded (run `sextant monitor`)", err=True)
        return
    from sextant.cli.render import print_table

    keys = ("bar_ts", "kind", "symbol", "severity", "statistic", "value", "threshold")
    print_table("anomalies", [{k: a.get(k) for k in keys} for a in found], list(keys))


@app.command()
def explain(
    decision_id: Annotated[
        str | None, typer.Argument(help="The decision to explain (see `sextant decide`).")
    ] = None,
    anomaly: Annotated[
        str | None, typer.Option("--anomaly", help="Explain this anomaly id instead.")
    ] = None,
    market: Annotated[
        str | None, typer.Option("--market", help="Explain the market of this symbol instead.")
    ] = None,
    question: Annotated[
        str | None, typer.Option(help="Ask this instead of the default question.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A grounded explanation from recorded evidence: the LLM when OPENAI_BASE_URL or
    OPENAI_API_KEY is set, the offline narrative otherwise; stored with its grounding result."""
    chosen = [(k, v) for k, v in (("decision", decision_id), ("anomaly", anomaly),
                                   ("market", market)) if v]  # fmt: skip
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of DECISION_ID, --anomaly ID, --market SYMBOL")
    settings = _settings()
    from agents.explain.service import ExplainService

    ((subject, subject_id),) = chosen
    with ExplainService(settings) as service:
        record = service.explain(subject, subject_id, question)  # type: ignore[arg-type]
    if as_json:
        _emit_json(record)
        return
    typer.echo(_explanation_text(record))


def _explanation_text(record: dict[str, Any]) -> str:
    """An explanation record as a person reads it: the answer, then how it was made."""
    answer = record["answer"]
    lines = [answer["summary"]]
    lines += [f"- {line}" for line in answer["drivers"]]
    if answer["risk_notes"]:
        lines += ["Risk:", *[f"- {line}" for line in answer["risk_notes"]]]
    grounded = (
        "grounded" if record["grounded"] else "NOT grounded: " + "; ".join(record["failed_claims"])
    )
    lines.append(
        f"[{record['model']}, {grounded}, {len(answer['citations'])} citations, "
        f"{len(record['tool_calls'])} tool calls, {record['latency_ms']:.0f} ms, id {record['id']}]"
    )
    return "\n".join(lines)


@app.command()
def chat(
    message: Annotated[
        list[str] | None,
        typer.Option("--message", "-m", help="Ask these in order and exit (no prompt)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="With -m: one JSON record per answer.")
    ] = False,
) -> None:
    """The trade-review chat in the terminal, with history: why a decision was made, the latest
    decision of a symbol, anomalies since a date, which models are live, how the market is.
    Without an LLM it answers these from the tools and says plainly what it cannot answer."""
    settings = _settings()
    from agents.explain.service import ExplainService, new_session_id

    session = new_session_id()
    with ExplainService(settings) as service:
        if message:
            for text in message:
                record = service.chat(session, text)
                if as_json:
                    _emit_json(record)
                else:
                    typer.echo(f"> {text}\n{_explanation_text(record)}\n")
            return
        typer.echo(f"sextant chat ({service.model}); an empty line or Ctrl-D ends it")
        while True:
            try:
                text = input("> ").strip()
            except EOFError:
                break
            if not text:
                break
            try:
                typer.echo(_explanation_text(service.chat(session, text)) + "\n")
            except SextantError as exc:
                typer.echo(f"error: {exc}", err=True)


@app.command("eval-explanations")
def eval_explanations(
    limit: Annotated[int, typer.Option(min=1, help="The latest this many decisions.")] = 20,
    account: Annotated[
        str | None, typer.Option(help="Decisions of this account (default: the paper account).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Explain the latest decisions and score every answer (numbers grounded, entities correct,
    citations resolvable) with mlflow.genai.evaluate: a run in experiment sextant-explanations."""
    settings = _settings()
    from agents.explain.evaluation import evaluate_explanations

    report = evaluate_explanations(settings, limit=limit, account=account)
    if as_json:
        _emit_json(report.to_json())
        return
    from sextant.cli.render import print_table

    rows = [{"scorer": k, "value": v} for k, v in sorted(report.metrics.items())]
    print_table(f"explanations by {report.model} ({report.decisions} decisions)", rows,
                ["scorer", "value"])  # fmt: skip
    for decision, claims in report.failures.items():
        typer.echo(f"{decision}: {'; '.join(claims)}")
    typer.echo(f"MLflow run {report.run_id} in experiment {report.experiment}")


@app.command()
def run(
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The whole pipeline on the bundled sample, orchestrated by Prefect (no network needed)."""
    settings = _settings()
    from flows.pipeline import pipeline_flow

    summary = pipeline_flow(home=str(settings.paths.home))
    if as_json:
        _emit_json(summary)
        return
    from sextant.cli.render import print_table

    for name, rows in summary.items():
        if rows:
            print_table(name, rows, list(rows[0]))


def main() -> None:
    """Console entry point: typed sextant errors become one clear line and exit code 2."""
    try:
        app()
    except SextantError as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)
