"""OHLCV candles and perpetual funding-rate history from any ccxt exchange, page by page.

One ``Batch`` per page, so the caller stores progress as it goes and an interrupted run resumes
from what was stored. The still-open candle is never yielded: a candle counts as closed when
``open + timeframe <= server time`` (the exchange's clock, not ours). Transient ccxt errors
(``OperationFailed`` and subclasses) are retried with exponential backoff, honouring a
``Retry-After`` header; refusals (``ExchangeError``: unknown symbol, bad request) fail at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import ccxt
import numpy as np
import pandas as pd

from features.ingest.batch import COLUMNS, Batch, Cursor, Dataset
from features.ingest.sources.retry import parse_retry_after, retry_delay
from sextant.errors import ConfigError, SourceRequestError, SourceUnavailableError
from sextant.settings import Settings, load_settings
from sextant.timeframes import timeframe_ms
from sextant.timeutil import from_epoch_ms, to_epoch_ms

__all__ = ["CcxtSource", "Progress", "override_api_host"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Progress callback: (label, done_ms, total_ms) after each page."""

_T = TypeVar("_T")
_SUPPORTED = (Dataset.CANDLES, Dataset.FUNDING)


def override_api_host(urls: Mapping[str, object], api_url: str) -> dict[str, object]:
    """Copy of a ccxt ``urls['api']`` tree with every URL's scheme and host replaced by ``api_url``'s.

    Paths are kept; a path in ``api_url`` is put in front of them (``http://proxy/binance`` +
    ``/api/v3``), so a proxy, a testnet or a loopback fake can stand in for the exchange.
    """
    base = urlsplit(api_url)
    if base.scheme not in {"http", "https"} or not base.netloc:
        raise ConfigError(f"api_url must look like http(s)://host[:port][/prefix], got {api_url!r}")
    prefix = base.path.rstrip("/")

    def swap(value: object) -> object:
        if isinstance(value, Mapping):
            return {key: swap(item) for key, item in value.items()}
        if isinstance(value, str):
            parts = urlsplit(value)
            if parts.scheme and parts.netloc:
                return urlunsplit(
                    (base.scheme, base.netloc, prefix + parts.path, parts.query, parts.fragment)
                )
        return value

    return {key: swap(item) for key, item in urls.items()}


class CcxtSource:
    """Candles (and/or funding history of perpetuals) for ``symbols`` from the ccxt exchange ``exchange_id``.

    Symbols are ccxt unified ("SOL/USDT", perpetual "BTC/USDT:USDT"); funding is fetched for the
    contract symbols (those with a settle currency after ':') only. ``since`` (tz-aware) is where a
    symbol with nothing stored starts; otherwise a run resumes after the cursor's last stored row.
    """

    def __init__(
        self,
        exchange_id: str = "binance",
        symbols: Sequence[str] = ("BTC/USDT",),
        timeframe: str = "1h",
        since: datetime | None = None,
        *,
        dataset: Dataset | Iterable[Dataset] = Dataset.CANDLES,
        api_url: str | None = None,
        settings: Settings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.name = exchange_id
        self.symbols = tuple(symbols)
        self.timeframe = timeframe
        self.datasets = (
            (dataset,) if isinstance(dataset, Dataset) else tuple(dict.fromkeys(dataset))
        )
        self.since = since
        self._sleep = sleep
        self._progress = progress
        self._timeframe_ms = timeframe_ms(timeframe)
        self._check_options()
        self._exchange = _make_exchange(exchange_id, self.settings, self.symbols)
        self._check_capabilities()
        api_url = api_url or self.settings.ccxt_api_url
        if api_url:
            api = self._exchange.urls.get("api")
            tree = api if isinstance(api, Mapping) else {"api": api}
            swapped = override_api_host(tree, api_url)
            self._exchange.urls["api"] = swapped if isinstance(api, Mapping) else swapped["api"]

    def batches(self, cursor: Cursor) -> Iterator[Batch]:
        """Yield one batch per page: candles of every symbol, then funding of every perpetual."""
        starts = [
            (d, s, self._start_ms(cursor, d, s))
            for d in self.datasets
            for s in self.symbols
            if d is Dataset.CANDLES or ":" in s
        ]
        self._call("load_markets", "markets", self._exchange.load_markets)
        now_ms = self._server_time_ms()
        for dataset, symbol, start_ms in starts:
            pages = self._candle_pages if dataset is Dataset.CANDLES else self._funding_pages
            yield from pages(symbol, start_ms, now_ms)

    def _start_ms(self, cursor: Cursor, dataset: Dataset, symbol: str) -> int:
        """Just after the last stored row (one bar for candles, 1 ms for funding), else ``since``."""
        if dataset is Dataset.CANDLES:
            last = cursor.last_event_ts(
                dataset, source=self.name, symbol=symbol, timeframe=self.timeframe
            )
            if last is not None:
                return to_epoch_ms(last) + self._timeframe_ms
        else:
            last = cursor.last_event_ts(dataset, source=self.name, symbol=symbol)
            if last is not None:
                return to_epoch_ms(last) + 1
        if self.since is None:
            raise ConfigError(
                f"nothing stored yet for {self.name} {symbol} {dataset.value}: give a start date (--since)"
            )
        return to_epoch_ms(self.since)

    # -- candles -------------------------------------------------------------------------------

    def _candle_pages(self, symbol: str, start_ms: int, now_ms: int) -> Iterator[Batch]:
        step = self._timeframe_ms
        label = f"{self.name} {symbol} {self.timeframe}"
        next_ms = start_ms
        while next_ms + step <= now_ms:  # a closed candle can still exist at or after next_ms
            since = next_ms
            rows: list[list[Any]] = self._call(
                f"fetch_ohlcv {self.timeframe} since {from_epoch_ms(since).isoformat()}",
                symbol,
                self._exchange.fetch_ohlcv,
                symbol,
                self.timeframe,
                since=since,
                limit=self.settings.ccxt_page_limit,
            )
            new = [row for row in rows if row[0] is not None and row[0] >= since]
            closed = [row for row in new if row[0] + step <= now_ms]
            if closed:
                next_ms = max(row[0] for row in closed) + step
                frame = self._candle_frame(symbol, closed)
                yield Batch(
                    Dataset.CANDLES,
                    self.name,
                    self._origin(),
                    frame,
                    symbol=symbol,
                    timeframe=self.timeframe,
                    now=from_epoch_ms(now_ms),
                )
                self._report(label, next_ms - start_ms, now_ms - start_ms)
            # Stop on a page with nothing new, or one that reached the still-open candle.
            if not closed or len(closed) < len(new):
                break

    def _candle_frame(self, symbol: str, rows: list[list[Any]]) -> pd.DataFrame:
        values = np.array([row[1:6] for row in rows], dtype=float)  # None (unparsable) becomes NaN
        frame = pd.DataFrame(
            {
                "symbol": symbol,
                "timeframe": self.timeframe,
                "event_ts": pd.to_datetime([row[0] for row in rows], unit="ms", utc=True),
                "open": values[:, 0],
                "high": values[:, 1],
                "low": values[:, 2],
                "close": values[:, 3],
                "volume": values[:, 4],
            }
        )
        return frame.loc[:, list(COLUMNS[Dataset.CANDLES])]

    # -- funding -------------------------------------------------------------------------------

    def _funding_pages(self, symbol: str, start_ms: int, now_ms: int) -> Iterator[Batch]:
        label = f"{self.name} {symbol} funding"
        next_ms = start_ms
        while next_ms <= now_ms:
            since = next_ms
            rows: list[dict[str, Any]] = self._call(
                f"fetch_funding_rate_history since {from_epoch_ms(since).isoformat()}",
                symbol,
                self._exchange.fetch_funding_rate_history,
                symbol,
                since=since,
                limit=self.settings.ccxt_page_limit,
            )
            new = [
                row
                for row in rows
                if row.get("timestamp") is not None and row["timestamp"] >= since
            ]
            if not new:
                break
            next_ms = max(row["timestamp"] for row in new) + 1
            event_ts = pd.to_datetime([row["timestamp"] for row in new], unit="ms", utc=True)
            frame = pd.DataFrame(
                {
                    "symbol": symbol,
                    "event_ts": event_ts,
                    "available_at": event_ts,  # a funding rate is known at its settlement
                    "funding_rate": np.array([row.get("fundingRate") for row in new], dtype=float),
                }
            )
            frame = frame.loc[:, list(COLUMNS[Dataset.FUNDING])]
            yield Batch(
                Dataset.FUNDING,
                self.name,
                self._origin(),
                frame,
                symbol=symbol,
                now=from_epoch_ms(now_ms),
            )
            self._report(label, min(next_ms, now_ms) - start_ms, now_ms - start_ms)

    # -- plumbing ------------------------------------------------------------------------------

    def _call(
        self, what: str, symbol: str, request: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> _T:
        """Run one ccxt request: retry transient failures with backoff, fail at once on refusals."""
        settings = self.settings
        for attempt in range(1, settings.ccxt_max_tries + 1):
            # Cleared so that a Retry-After read below belongs to this request's response.
            self._exchange.last_response_headers = None
            try:
                return request(*args, **kwargs)
            except ccxt.OperationFailed as exc:
                problem = f"{type(exc).__name__}: {exc}"
                retry_after = parse_retry_after(self._exchange.last_response_headers)
                if attempt == settings.ccxt_max_tries:
                    raise SourceUnavailableError(
                        f"{self.name} {what} for {symbol} failed after {attempt} tries; last failure: {problem}"
                    ) from exc
                delay = retry_delay(
                    attempt,
                    base_s=settings.ccxt_backoff_s,
                    cap_s=settings.ccxt_backoff_max_s,
                    retry_after_s=retry_after,
                )
                if delay is None:
                    raise SourceUnavailableError(
                        f"{self.name} {what} for {symbol}: the exchange asks to wait {retry_after:.0f} s "
                        f"(Retry-After), more than ccxt_backoff_max_s={settings.ccxt_backoff_max_s:g}; "
                        f"giving up after {attempt} tries; last failure: {problem}"
                    ) from exc
                log.warning(
                    "%s %s for %s: %s (try %d of %d), retrying in %.1f s",
                    self.name,
                    what,
                    symbol,
                    problem,
                    attempt,
                    settings.ccxt_max_tries,
                    delay,
                )
                self._sleep(delay)
            except ccxt.ExchangeError as exc:
                hint = (
                    " (is the symbol listed? use ccxt's unified form, e.g. 'BTC/USDT' or perpetual 'BTC/USDT:USDT')"
                    if isinstance(exc, ccxt.BadSymbol)
                    else ""
                )
                raise SourceRequestError(
                    f"{self.name} refused {what} for {symbol}{hint}: {type(exc).__name__}: {exc}"
                ) from exc
        raise AssertionError("unreachable: the last try returns or raises")

    def _server_time_ms(self) -> int:
        """The exchange's clock where it tells it, else the local UTC clock."""
        if self._exchange.has.get("fetchTime"):
            server_ms = self._call("fetch_time", "*", self._exchange.fetch_time)
            if server_ms is not None:
                return int(server_ms)
            log.warning(
                "%s fetch_time returned nothing; judging closed candles by the local clock",
                self.name,
            )
        return to_epoch_ms(datetime.now(UTC))

    def _origin(self) -> str:
        """The REST endpoint of the last request, without its query string."""
        url = self._exchange.last_request_url or ""
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def _report(self, label: str, done_ms: int, total_ms: int) -> None:
        if self._progress is not None:
            self._progress(label, max(done_ms, 0), max(total_ms, 0))

    def _check_options(self) -> None:
        if not self.symbols:
            raise ConfigError(f"{self.name}: no symbols given")
        unsupported = [d for d in self.datasets if d not in _SUPPORTED]
        if unsupported or not self.datasets:
            raise ConfigError(
                f"{self.name}: ccxt delivers {[d.value for d in _SUPPORTED]}, not {[d.value for d in unsupported] or 'nothing'}"
            )
        if self.since is not None and self.since.tzinfo is None:
            raise ConfigError(
                f"since={self.since.isoformat()} has no time zone: give a tz-aware UTC datetime"
            )
        if Dataset.FUNDING in self.datasets and not any(":" in s for s in self.symbols):
            raise ConfigError(
                f"funding history needs perpetual symbols such as 'BTC/USDT:USDT'; got {list(self.symbols)}"
            )

    def _check_capabilities(self) -> None:
        has = self._exchange.has
        needed = {Dataset.CANDLES: "fetchOHLCV", Dataset.FUNDING: "fetchFundingRateHistory"}
        missing = [needed[d] for d in self.datasets if not has.get(needed[d])]
        if missing:
            raise ConfigError(
                f"exchange {self.name!r} does not support {missing} in ccxt {ccxt.__version__}"
            )
        timeframes = self._exchange.timeframes
        if Dataset.CANDLES in self.datasets and timeframes and self.timeframe not in timeframes:
            raise ConfigError(
                f"exchange {self.name!r} has no timeframe {self.timeframe!r}; it offers {sorted(timeframes)}"
            )


def _make_exchange(exchange_id: str, settings: Settings, symbols: Sequence[str]) -> Any:
    """A rate-limited ccxt client that loads only the market types the symbols need."""
    exchange_class = getattr(ccxt, exchange_id, None) if exchange_id in ccxt.exchanges else None
    if exchange_class is None:
        raise ConfigError(f"unknown ccxt exchange id {exchange_id!r} (see ccxt.exchanges)")
    exchange = exchange_class(
        {"enableRateLimit": True, "timeout": int(settings.http_timeout_s * 1000)}
    )
    # Loading every market family costs a request each (binance: spot, linear, inverse). Where the
    # exchange takes {"types": [...]} under these names (binance, bybit), load only those needed.
    option = exchange.options.get("fetchMarkets")
    types = option.get("types") if isinstance(option, dict) else None
    needed = {_market_type(s) for s in symbols}
    if isinstance(types, list) and needed <= set(types):
        option["types"] = [t for t in types if t in needed]
    return exchange


def _market_type(symbol: str) -> str:
    """ccxt market family of a unified symbol: 'spot', 'linear' (settled in quote) or 'inverse'."""
    if ":" not in symbol:
        return "spot"
    pair, settle = symbol.split(":", 1)
    quote = pair.split("/")[-1]
    return "linear" if settle.split("-")[0] == quote else "inverse"
