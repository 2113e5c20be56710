"""The ``sextant`` command line: the composition root.

Every command imports what it needs inside its body, so ``sextant --help`` stays fast and no
layer depends on the CLI.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

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
    from sextant.runtime import init_runtime
    from sextant.settings import load_settings

    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    init_runtime(settings)
    return settings


def _emit_json(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str))


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    from sextant.errors import ConfigError
    from sextant.timeutil import parse_utc

    try:
        return parse_utc(value)
    except ValueError as exc:
        raise ConfigError(f"--since {value!r} is not an ISO date or timestamp: {exc}") from exc


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
    from features.ingest.batch import Dataset
    from features.ingest.plan import IngestRequest, plan_ingest
    from features.ingest.service import ingest_source
    from features.ingest.store import MarketStore
    from sextant.cli.progress import progress_reporter

    settings = _settings()
    request = IngestRequest(
        source=source.value,
        exchange=exchange,
        api_url=api_url,
        symbols=tuple(symbol or ()),
        timeframe=timeframe,
        since=_parse_since(since),
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
    from features.ingest.store import MarketStore

    settings = _settings()
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
    from features.ingest.batch import Dataset
    from features.ingest.store import MarketStore

    settings = _settings()
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


@app.command()
def run(
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The whole pipeline on the bundled sample, orchestrated by Prefect (no network needed)."""
    from flows.pipeline import pipeline_flow

    settings = _settings()
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
