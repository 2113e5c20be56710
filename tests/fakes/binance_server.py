"""A loopback stand-in for Binance's public REST API, enough for ccxt's ``binance`` class.

Serves exchangeInfo (spot + USDⓈ-M), server time, klines and funding-rate history from pandas
frames (freqtrade layout: ``date`` open time, ``open``..``volume``; funding rate in ``open``), with a
settable server time, a scriptable failure plan, injected duplicates and gaps, and a record of every
request (path + query) so tests can assert pagination.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "FakeBinance",
    "Fault",
    "binance_error",
    "internal_error",
    "rate_limited",
    "run_fake_binance",
    "server_error",
]

SPOT = "/api/v3"
LINEAR = "/fapi/v1"
_INTERVAL_MS = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


@dataclass(frozen=True)
class Fault:
    """One scripted bad answer: HTTP status, body (JSON-able, or raw text) and extra headers."""

    status: int
    body: object = ""
    headers: Mapping[str, str] = field(default_factory=dict)


def binance_error(code: int, msg: str, status: int = 400) -> Fault:
    """Binance's error JSON ``{"code": ..., "msg": ...}`` with an HTTP status."""
    return Fault(status, {"code": code, "msg": msg})


def rate_limited(retry_after_s: int) -> Fault:
    """HTTP 429 with a ``Retry-After`` header, as Binance answers when the weight limit is hit."""
    body = {
        "code": -1003,
        "msg": "Too many requests; current limit of IP is 6000 request weight per 1 MINUTE.",
    }
    return Fault(429, body, {"Retry-After": str(retry_after_s)})


def server_error(status: int = 500) -> Fault:
    """A bare 5xx (gateway or maintenance) with a text body."""
    return Fault(status, "Service Unavailable" if status == 503 else "Internal Server Error")


def internal_error() -> Fault:
    """Binance's -1001 'try again' error, which ccxt maps to a plain OperationFailed."""
    return binance_error(-1001, "Internal error; unable to process your request. Please try again.")


def _ms(ts: object) -> int:
    return int(pd.Timestamp(ts).value // 1_000_000)  # type: ignore[arg-type]


def _ms_array(dates: pd.Series) -> npt.NDArray[np.int64]:
    """Epoch milliseconds of a tz-aware datetime column, whatever its unit (ns or ms)."""
    return np.asarray(dates.dt.as_unit("ms").astype("int64"), dtype=np.int64)


def _symbol_info(symbol: str, base: str, quote: str) -> dict[str, Any]:
    """A spot exchangeInfo entry trimmed to the fields ccxt reads."""
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01000000",
                "maxPrice": "1000000.00000000",
                "tickSize": "0.01000000",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001000",
                "maxQty": "9000.00000000",
                "stepSize": "0.00001000",
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
    }


def _perp_info(symbol: str, base: str, quote: str) -> dict[str, Any]:
    """A USDⓈ-M perpetual exchangeInfo entry trimmed to the fields ccxt reads."""
    return {
        "symbol": symbol,
        "pair": symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "baseAsset": base,
        "quoteAsset": quote,
        "marginAsset": quote,
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "triggerProtect": "0.0500",
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "556.80",
                "maxPrice": "4529764",
                "tickSize": "0.10",
            },
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.001",
                "maxQty": "120",
                "stepSize": "0.001",
            },
            {"filterType": "MIN_NOTIONAL", "notional": "100"},
        ],
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


SPOT_MARKETS = [
    _symbol_info("BTCUSDT", "BTC", "USDT"),
    _symbol_info("ETHUSDT", "ETH", "USDT"),
    _symbol_info("SOLUSDT", "SOL", "USDT"),
]
PERP_MARKETS = [_perp_info("BTCUSDT", "BTC", "USDT")]


class FakeBinance:
    """State of the fake exchange; tests mutate it between (or before) requests.

    ``candles`` / ``perp_candles`` map a Binance market id ("SOLUSDT") to a freqtrade-layout frame
    of ``timeframe`` bars; ``funding`` maps a perp id to settlements (``date``, rate in ``open``).
    A symbol listed in exchangeInfo but absent here answers -1121 "Invalid symbol.".
    """

    def __init__(
        self,
        *,
        server_time: pd.Timestamp,
        candles: Mapping[str, pd.DataFrame] | None = None,
        perp_candles: Mapping[str, pd.DataFrame] | None = None,
        funding: Mapping[str, pd.DataFrame] | None = None,
        timeframe: str = "1h",
    ) -> None:
        self.server_time = pd.Timestamp(server_time)
        self.timeframe = timeframe
        self.candles = dict(candles or {})
        self.perp_candles = dict(perp_candles or {})
        self.funding = dict(funding or {})
        self.duplicates: set[pd.Timestamp] = set()  # open times served twice, back to back
        self.gaps: set[pd.Timestamp] = set()  # open times never served
        self.overlap_pages = False  # each klines answer also repeats the bar just before startTime
        self.requests: list[str] = []
        self.url = ""
        self._faults: list[tuple[str, int, int | None, Fault]] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def fail(self, path: str, fault: Fault, *, on: int = 1, times: int | None = 1) -> None:
        """Answer the ``on``-th request to ``path`` (1-based) and the next ``times - 1`` with ``fault``; None = forever."""
        self._faults.append((path, on, times, fault))

    def clear_faults(self) -> None:
        """Forget the failure plan: every later request is answered normally."""
        with self._lock:
            self._faults.clear()

    def requests_to(self, path: str) -> list[str]:
        """Recorded requests (path + query) whose path is ``path``."""
        return [r for r in self.requests if urlsplit(r).path == path]

    def answer(self, raw_path: str) -> tuple[int, object, Mapping[str, str]]:
        """Status, body and headers for one GET; records the request first."""
        parts = urlsplit(raw_path)
        with self._lock:
            self.requests.append(raw_path)
            nth = self._counts[parts.path] = self._counts.get(parts.path, 0) + 1
            for path, first, times, fault in self._faults:
                if path == parts.path and nth >= first and (times is None or nth < first + times):
                    return fault.status, fault.body, fault.headers
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        routes: dict[str, Callable[[], tuple[int, object]]] = {
            f"{SPOT}/time": lambda: (200, {"serverTime": _ms(self.server_time)}),
            f"{LINEAR}/time": lambda: (200, {"serverTime": _ms(self.server_time)}),
            f"{SPOT}/exchangeInfo": lambda: (200, self._exchange_info(SPOT_MARKETS)),
            f"{LINEAR}/exchangeInfo": lambda: (200, self._exchange_info(PERP_MARKETS)),
            f"{SPOT}/klines": lambda: self._klines(self.candles, query),
            f"{LINEAR}/klines": lambda: self._klines(self.perp_candles, query),
            f"{LINEAR}/fundingRate": lambda: self._funding(query),
        }
        route = routes.get(parts.path)
        if route is None:
            return 404, {"code": -5, "msg": f"unknown path {parts.path}"}, {}
        status, body = route()
        return status, body, {}

    def _exchange_info(self, symbols: list[dict[str, Any]]) -> dict[str, Any]:
        limits = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            }
        ]
        return {
            "timezone": "UTC",
            "serverTime": _ms(self.server_time),
            "rateLimits": limits,
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _klines(
        self, frames: Mapping[str, pd.DataFrame], query: Mapping[str, str]
    ) -> tuple[int, object]:
        frame = frames.get(query.get("symbol", ""))
        if frame is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        interval = query.get("interval", "")
        if interval != self.timeframe:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        step = _INTERVAL_MS[interval]
        served = frame[~frame["date"].isin(list(self.gaps)) & (frame["date"] <= self.server_time)]
        served = pd.concat(
            [served, served[served["date"].isin(list(self.duplicates))]]
        ).sort_values("date", kind="stable")
        open_ms = _ms_array(served["date"])
        limit = min(int(query.get("limit", 500)), 1000)
        keep = np.ones(len(served), dtype=bool)
        if "endTime" in query:
            keep &= open_ms <= int(query["endTime"])
        if "startTime" in query:
            start = int(query["startTime"]) - (step if self.overlap_pages else 0)
            rows = served[keep & (open_ms >= start)].head(limit)
        else:
            rows = served[keep].tail(limit)
        return 200, [_kline(row, step) for row in rows.itertuples(index=False)]

    def _funding(self, query: Mapping[str, str]) -> tuple[int, object]:
        symbol = query.get("symbol", "")
        frame = self.funding.get(symbol)
        if frame is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        served = frame[frame["date"] <= self.server_time]
        times = _ms_array(served["date"])
        keep = np.ones(len(served), dtype=bool)
        if "endTime" in query:
            keep &= times <= int(query["endTime"])
        limit = min(int(query.get("limit", 100)), 1000)
        if "startTime" in query:
            rows = served[keep & (times >= int(query["startTime"]))].head(limit)
        else:
            rows = served[keep].tail(limit)
        return 200, [
            {
                "symbol": symbol,
                "fundingTime": _ms(row.date),
                "fundingRate": f"{row.open:.8f}",
                "markPrice": f"{row.close:.8f}",
            }
            for row in rows.itertuples(index=False)
        ]


def _kline(row: Any, step: int) -> list[object]:
    """One Binance kline array: [openTime, "o", "h", "l", "c", "v", closeTime, quote vol, trades, taker base, taker quote, "0"]."""
    open_time = _ms(row.date)
    quote_volume = row.volume * row.close
    return [
        open_time,
        f"{row.open:.8f}",
        f"{row.high:.8f}",
        f"{row.low:.8f}",
        f"{row.close:.8f}",
        f"{row.volume:.8f}",
        open_time + step - 1,
        f"{quote_volume:.8f}",
        1000,
        f"{row.volume / 2:.8f}",
        f"{quote_volume / 2:.8f}",
        "0",
    ]


def _handler_for(fake: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, headers = fake.answer(self.path)
            payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type",
                "text/plain" if isinstance(body, str) else "application/json;charset=UTF-8",
            )
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler


@contextmanager
def run_fake_binance(fake: FakeBinance) -> Iterator[FakeBinance]:
    """Serve ``fake`` on 127.0.0.1 (ephemeral port) in a daemon thread; sets ``fake.url``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="fake-binance",
        daemon=True,
    )
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
