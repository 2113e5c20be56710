"""A loopback stand-in for alternative.me's ``/fng/`` API and for news feeds (RSS 2.0 and Atom).

It serves real Fear & Greed rows (from shared/data) in the API's JSON format, honouring ``limit``;
static routes can be added (garbage bodies, 404s); a fault plan makes the next requests fail
(503, 429 with Retry-After) or stall; every request is logged.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import pandas as pd

__all__ = [
    "ATOM_PATH",
    "FNG_CSV",
    "FNG_PATH",
    "RSS_PATH",
    "AltDataServer",
    "Fault",
    "FeedItem",
    "LoggedRequest",
    "atom_document",
    "fng_payload",
    "load_fng_rows",
    "rss_document",
    "serve_alt_data",
]

# the bundled sample's Fear & Greed rows (the same CSV format as ../shared/data/fear_greed/fng.csv,
# whose longer history tests take through the `shared_data` fixture)
FNG_CSV = (
    Path(__file__).resolve().parents[2] / "features" / "ingest" / "sample_data" / "fear_greed.csv"
)
FNG_PATH = "/fng/"
RSS_PATH = "/feeds/crypto.rss"
ATOM_PATH = "/feeds/crypto.atom"


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One news entry, served identically in the RSS and the Atom feed."""

    title: str
    published: datetime | None  # None: the entry carries no date
    description: str = ""
    link: str = ""


@dataclass(frozen=True, slots=True)
class Fault:
    """What the next request gets instead of a normal answer (status None: answer, after the delay)."""

    status: int | None = 503
    delay_s: float = 0.0
    retry_after: str | None = None


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """A request as the server saw it, with the status it answered."""

    path: str
    query: dict[str, str]
    status: int


def load_fng_rows(path: Path = FNG_CSV) -> pd.DataFrame:
    """The raw Fear & Greed CSV rows (``date,timestamp,value,classification``), oldest first."""
    return pd.read_csv(
        path, dtype={"date": str, "timestamp": "int64", "value": "float64", "classification": str}
    )


def fng_payload(rows: pd.DataFrame, limit: int) -> dict[str, Any]:
    """alternative.me's ``/fng/?format=json`` answer for ``rows``: newest first, ``limit`` 0 = all."""
    newest_first = rows.sort_values("timestamp", ascending=False)
    if limit > 0:
        newest_first = newest_first.head(limit)
    data: list[dict[str, str]] = []
    columns = (newest_first[c].tolist() for c in ("timestamp", "value", "classification"))
    for position, (timestamp, value, classification) in enumerate(zip(*columns, strict=True)):
        item = {
            "value": str(round(float(value))),  # the API writes whole numbers as strings: "40"
            "value_classification": str(classification),
            "timestamp": str(int(timestamp)),
        }
        if position == 0:
            item["time_until_update"] = "43200"
        data.append(item)
    return {"name": "Fear and Greed Index", "data": data, "metadata": {"error": None}}


def rss_document(items: Sequence[FeedItem], *, title: str = "Crypto news") -> bytes:
    """An RSS 2.0 channel with ``items`` (pubDate in RFC 822, keeping each item's UTC offset)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>http://example.test/</link><description>fake</description>",
    ]
    for item in items:
        parts.append("<item>")
        parts.append(f"<title>{escape(item.title)}</title>")
        if item.link:
            parts.append(f"<link>{escape(item.link)}</link>")
        if item.description:
            parts.append(f"<description>{escape(item.description)}</description>")
        if item.published is not None:
            parts.append(f"<pubDate>{format_datetime(item.published)}</pubDate>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "\n".join(parts).encode("utf-8")


def atom_document(items: Sequence[FeedItem], *, title: str = "Crypto news") -> bytes:
    """An Atom feed with ``items`` (RFC 3339 dates, keeping each item's UTC offset)."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{escape(title)}</title><id>urn:fake:feed</id>",
    ]
    for number, item in enumerate(items):
        parts.append(f"<entry><id>urn:fake:entry:{number}</id>")
        parts.append(f"<title>{escape(item.title)}</title>")
        if item.link:
            parts.append(f'<link href="{escape(item.link)}"/>')
        if item.description:
            parts.append(f"<summary>{escape(item.description)}</summary>")
        if item.published is not None:
            stamp = item.published.isoformat()
            parts.append(f"<published>{stamp}</published><updated>{stamp}</updated>")
        parts.append("</entry>")
    parts.append("</feed>")
    return "\n".join(parts).encode("utf-8")


class AltDataServer:
    """Routes: ``FNG_PATH`` (JSON), ``RSS_PATH``, ``ATOM_PATH``, plus any added with ``set_route``."""

    def __init__(self, fng_rows: pd.DataFrame, items: Sequence[FeedItem] = ()) -> None:
        self.fng_rows = fng_rows
        self.items = tuple(items)
        self.requests: list[LoggedRequest] = []
        self._faults: deque[Fault] = deque()
        self._routes: dict[str, tuple[int, str, bytes]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="alt-data-server",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return self.base_url + path

    def fail_next(self, status: int, times: int = 1, *, retry_after: str | None = None) -> None:
        """The next ``times`` requests (any path) answer ``status``."""
        with self._lock:
            self._faults.extend(Fault(status, retry_after=retry_after) for _ in range(times))

    def stall_next(self, delay_s: float, times: int = 1) -> None:
        """The next ``times`` requests wait ``delay_s`` before answering normally."""
        with self._lock:
            self._faults.extend(Fault(None, delay_s=delay_s) for _ in range(times))

    def set_route(
        self, path: str, body: bytes, *, status: int = 200, content_type: str = "application/json"
    ) -> None:
        """Serve a fixed answer at ``path``."""
        with self._lock:
            self._routes[path] = (status, content_type, body)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def respond(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for one request (called by the handler thread)."""
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            route = self._routes.get(path)
        if fault is not None:
            time.sleep(fault.delay_s)
            if fault.status is not None:
                headers = {"Content-Type": "text/plain"}
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                return fault.status, headers, f"fault {fault.status}".encode()
        if route is not None:
            status, content_type, body = route
            return status, {"Content-Type": content_type}, body
        if path == FNG_PATH:
            payload = fng_payload(self.fng_rows, int(query.get("limit", "1")))
            return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()
        if path == RSS_PATH:
            return (
                200,
                {"Content-Type": "application/rss+xml; charset=utf-8"},
                rss_document(self.items),
            )
        if path == ATOM_PATH:
            return (
                200,
                {"Content-Type": "application/atom+xml; charset=utf-8"},
                atom_document(self.items),
            )
        return 404, {"Content-Type": "text/plain"}, b"not found"

    def log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)


def _handler_for(server: AltDataServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            status, headers, body = server.respond(parts.path, query)
            server.log(LoggedRequest(parts.path, query, status))
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to answer to

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean; the request log is on the server object

    return Handler


@contextmanager
def serve_alt_data(
    fng_rows: pd.DataFrame, items: Sequence[FeedItem] = ()
) -> Iterator[AltDataServer]:
    """Run an ``AltDataServer`` on 127.0.0.1 (ephemeral port) for the duration of the block."""
    server = AltDataServer(fng_rows, items)
    server.start()
    try:
        yield server
    finally:
        server.stop()
