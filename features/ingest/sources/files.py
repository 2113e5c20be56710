"""Import local files: freqtrade feather, CSV and parquet candles/funding; Fear & Greed and news CSV/JSON.

Each file becomes one ``Batch``. What a file holds is taken from, in this order: the explicit
``dataset``/``symbol``/``timeframe`` arguments, the freqtrade file name (``BTC_USDT-1h.feather``,
``BTC_USDT_USDT-1h-futures.feather``, ``…-funding_rate.feather``, ``…-mark.feather``), and the
columns. Rows are normalized, never filtered: bad rows are the validator's business. A candle
file whose own spacing contradicts its timeframe is refused whole (``DataValidationError``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as pa_feather
import pyarrow.parquet as pa_parquet
from pandas.api.types import is_bool_dtype, is_datetime64_dtype, is_numeric_dtype

from features.ingest.batch import COLUMNS, Batch, Cursor, Dataset
from features.ingest.sources.epoch import from_epoch
from sextant.errors import ConfigError, DataValidationError
from sextant.settings import Settings, load_settings
from sextant.timeframes import timeframe_ms

__all__ = ["SUPPORTED_SUFFIXES", "FileSource", "NameHints", "infer_from_name", "read_file"]

_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")  # news archives only
SUPPORTED_SUFFIXES: tuple[str, ...] = (".feather", ".parquet", ".csv", *_JSON_SUFFIXES)

# freqtrade: pair_to_filename(pair) + "-" + timeframe [+ "-" + candle_type], e.g. BTC_USDT_USDT-1h-mark
_FREQTRADE_NAME = re.compile(
    r"^(?P<pair>[A-Za-z0-9]+(?:_[A-Za-z0-9]+){1,2})-(?P<timeframe>\d+[smhdwM])"
    r"(?:-(?P<kind>spot|futures|mark|index|premiumIndex|funding_rate))?$"
)
# candle types that are not trade prices get their own source label, so they never collide
_PRICE_LABELS = {"mark": "mark", "index": "index", "premiumIndex": "premium_index"}

_PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
_CANDLE_TIME_COLUMNS = ("event_ts", "date", "timestamp", "open_time")
_FUNDING_TIME_COLUMNS = ("event_ts", "date", "timestamp", "fundingtime", "funding_time")
_FUNDING_RATE_COLUMNS = ("funding_rate", "fundingrate")
_FEAR_GREED_COLUMNS = frozenset({"value", "classification"})
_NEWS_COLUMNS = frozenset({"headline", "title"})
# a candle file with fewer consecutive spacings than this is too short to show its timeframe
_MIN_SPACINGS = 3


@dataclass(frozen=True, slots=True)
class NameHints:
    """What a freqtrade file name says about its content (None where it says nothing)."""

    symbol: str | None = None
    timeframe: str | None = None
    dataset: Dataset | None = None
    price: str | None = None  # "mark", "index", "premium_index" for non-trade candles


def infer_from_name(name: str) -> NameHints:
    """Symbol (ccxt unified), timeframe, dataset and price kind from a freqtrade data file name."""
    match = _FREQTRADE_NAME.match(Path(name).name.split(".", 1)[0])
    if match is None:
        return NameHints()
    parts = match["pair"].split("_")
    symbol = f"{parts[0]}/{parts[1]}" + (f":{parts[2]}" if len(parts) == 3 else "")
    kind = match["kind"]
    if kind == "funding_rate":
        # freqtrade calls the file "1h" although the records come every 8h: no timeframe
        return NameHints(symbol=symbol, dataset=Dataset.FUNDING)
    return NameHints(
        symbol=symbol,
        timeframe=match["timeframe"],
        dataset=Dataset.CANDLES,
        price=_PRICE_LABELS.get(kind or ""),
    )


class FileSource:
    """A file or a directory of files (sorted, not recursive); one ``Batch`` per file.

    A file is imported whole each time; the store's keys make a repeated import add nothing.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        symbol: str | None = None,
        timeframe: str | None = None,
        dataset: Dataset | str | None = None,
        source_label: str = "file",
        settings: Settings | None = None,
    ) -> None:
        self.path = Path(path)
        self.symbol = symbol
        self.timeframe = timeframe
        self.dataset = None if dataset is None else _dataset(dataset)
        self.name = source_label
        self._settings = settings

    def files(self) -> list[Path]:
        """The files this source imports; raises ConfigError for a missing path or an empty folder."""
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise ConfigError(f"no such file or directory: {self.path}")
        found = sorted(
            p
            for p in self.path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_SUFFIXES
        )
        if not found:
            raise ConfigError(
                f"no supported files ({', '.join(SUPPORTED_SUFFIXES)}) in directory {self.path}"
            )
        return found

    def batches(self, cursor: Cursor) -> Iterator[Batch]:
        """Yield one normalized batch per file (the cursor is not needed: imports are idempotent).

        An unreadable file does not stop the others: its DataValidationError is raised after the
        remaining files were yielded (further failures are attached to it as notes).
        """
        failures: list[DataValidationError] = []
        for file in self.files():
            try:
                batch = read_file(
                    file,
                    symbol=self.symbol,
                    timeframe=self.timeframe,
                    dataset=self.dataset,
                    source_label=self.name,
                    settings=self._settings,
                )
            except DataValidationError as exc:
                failures.append(exc)
                continue
            yield batch
        if failures:
            first = failures[0]
            for other in failures[1:]:
                first.add_note(f"also unreadable: {other}")
            raise first


def read_file(
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    dataset: Dataset | str | None = None,
    source_label: str = "file",
    settings: Settings | None = None,
) -> Batch:
    """Read one file into a normalized batch; explicit arguments win over the name and columns."""
    path = Path(path)
    origin = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ConfigError(
            f"unsupported file type {suffix!r} of {path}: expected one of {SUPPORTED_SUFFIXES}"
        )
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise DataValidationError("the file is empty", origin=origin)
    explicit = None if dataset is None else _dataset(dataset)
    hints = infer_from_name(path.name)

    if suffix in _JSON_SUFFIXES:
        if explicit not in (None, Dataset.NEWS):
            raise ConfigError(f"JSON files can only hold news, not {explicit}: {path}")
        if explicit is None and hints.timeframe is not None:
            raise ConfigError(
                f"{path} looks like freqtrade JSON candles, which are not supported: "
                "convert them with `freqtrade convert-data --format-to feather`"
            )
        return _dispatch(Dataset.NEWS, path, source_label, settings)

    if suffix == ".csv":
        columns = _csv_header(path)
        kind = explicit or hints.dataset or _dataset_from_columns(columns)
        if kind in (Dataset.FEAR_GREED, Dataset.NEWS):
            return _dispatch(kind, path, source_label, settings)
        raw = _read_csv(path)
    else:
        table = _read_arrow(path, suffix)
        kind = explicit or hints.dataset or _dataset_from_columns(table.column_names)
        if kind in (Dataset.FEAR_GREED, Dataset.NEWS):
            raise ConfigError(f"{kind} files must be CSV (or JSON for news), got {path}")
        raw = table.to_pandas()

    symbol = symbol or hints.symbol
    if symbol is None:
        raise ConfigError(
            f"cannot infer the symbol of {kind} file {path} from its name: pass --symbol"
        )
    if kind is Dataset.FUNDING:
        frame = _funding_frame(raw, symbol, origin)
        return Batch(Dataset.FUNDING, source_label, origin, frame, symbol=symbol)

    timeframe = timeframe or hints.timeframe
    if timeframe is None:
        raise ConfigError(
            f"cannot infer the timeframe of candle file {path} from its name: pass --timeframe"
        )
    timeframe_ms(timeframe)  # unknown timeframe -> ConfigError
    label = source_label if hints.price is None else f"{source_label}:{hints.price}"
    frame = _candle_frame(raw, symbol, timeframe, origin)
    _refuse_contradicted_timeframe(frame["event_ts"], timeframe, origin)
    return Batch(Dataset.CANDLES, label, origin, frame, symbol=symbol, timeframe=timeframe)


def _dataset(value: Dataset | str) -> Dataset:
    try:
        return Dataset(value)
    except ValueError:
        raise ConfigError(
            f"unknown dataset {value!r}: expected one of {[d.value for d in Dataset]}"
        ) from None


def _dataset_from_columns(columns: Sequence[str]) -> Dataset:
    names = {str(c).strip().lower() for c in columns}
    if names & set(_FUNDING_RATE_COLUMNS):
        return Dataset.FUNDING
    if names >= _FEAR_GREED_COLUMNS:
        return Dataset.FEAR_GREED
    if names & _NEWS_COLUMNS:
        return Dataset.NEWS
    return Dataset.CANDLES


def _dispatch(kind: Dataset, path: Path, source_label: str, settings: Settings | None) -> Batch:
    """Fear & Greed and news files are read by their own sources' parsers (one format, one parser)."""
    settings = settings or load_settings()
    if kind is Dataset.FEAR_GREED:
        from features.ingest.sources.fear_greed import read_fear_greed_csv

        frame = read_fear_greed_csv(path, settings.fng_publication_lag)
    else:
        from features.ingest.sources.news import read_news_file

        frame = read_news_file(path, settings.news_publication_lag)
    return Batch(kind, source_label, str(path), frame)


def _csv_header(path: Path) -> list[str]:
    return list(_read_csv(path, nrows=0).columns)


def _read_csv(path: Path, nrows: int | None = None) -> pd.DataFrame:
    try:
        # round_trip: the parsed float is exactly the one that was written, no last-digit drift
        return pd.read_csv(path, nrows=nrows, float_precision="round_trip", low_memory=False)
    except (OSError, ValueError) as exc:  # ParserError, EmptyDataError, UnicodeDecodeError included
        raise DataValidationError(f"not a readable CSV file: {exc}", origin=str(path)) from exc


def _read_arrow(path: Path, suffix: str) -> pa.Table:
    try:
        if suffix == ".parquet":
            return pa_parquet.read_table(path)
        return pa_feather.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        kind = suffix.lstrip(".")
        raise DataValidationError(f"not a readable {kind} file: {exc}", origin=str(path)) from exc


class _Columns:
    """Case-insensitive access to a raw frame's columns."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame.reset_index(drop=True)
        self.names: dict[str, str] = {}
        for column in self.frame.columns:
            self.names.setdefault(str(column).strip().lower(), column)

    def first(self, candidates: Sequence[str]) -> str | None:
        return next((c for c in candidates if c in self.names), None)

    def __getitem__(self, name: str) -> pd.Series:
        return self.frame[self.names[name]]

    def require(self, wanted: Sequence[str | Sequence[str]], origin: str) -> list[str]:
        """Resolve each wanted column (or group of alternatives); raise naming every missing one."""
        found: list[str] = []
        missing: list[str] = []
        for want in wanted:
            options = (want,) if isinstance(want, str) else tuple(want)
            hit = self.first(options)
            if hit is None:
                missing.append(options[0] if len(options) == 1 else " | ".join(options))
            else:
                found.append(hit)
        if missing:
            raise DataValidationError(
                f"missing columns {missing}; the file has {[str(c) for c in self.frame.columns]}",
                origin=origin,
            )
        return found


def _candle_frame(raw: pd.DataFrame, symbol: str, timeframe: str, origin: str) -> pd.DataFrame:
    columns = _Columns(raw)
    time_column, *prices = columns.require([_CANDLE_TIME_COLUMNS, *_PRICE_COLUMNS], origin)
    rows = len(columns.frame)
    data: dict[str, object] = {
        "symbol": np.full(rows, symbol, dtype=object),
        "timeframe": np.full(rows, timeframe, dtype=object),
        "event_ts": _timestamps(columns[time_column], origin, time_column),
    }
    for name in prices:
        data[name] = _floats(columns[name], origin, name)
    return pd.DataFrame(data, columns=list(COLUMNS[Dataset.CANDLES]))


def _refuse_contradicted_timeframe(event_ts: pd.Series, timeframe: str, origin: str) -> None:
    """Raise DataValidationError when the rows' own spacing says they are another timeframe.

    The row checks cannot see this: 15-minute candles declared 1h put every fourth row on the
    hour grid, and those would be stored as hourly candles holding 15-minute prices (the others
    quarantined as off-grid); 1h candles declared 15m all sit on the 15-minute grid. The data
    shows its timeframe in the spacing between consecutive distinct timestamps: when one
    spacing accounts for a strict majority of them and it is not the declared bar length, the
    file holds another timeframe and is refused whole. A majority is robust to what real files
    have: gaps (a few longer spacings), duplicates (distinct timestamps only) and stray
    off-grid rows (a few shorter spacings) leave the bar length the majority, and rows that are
    unreadable are left to the row checks. Below ``_MIN_SPACINGS`` spacings a file is too short
    to show anything and only the row checks apply.
    """
    stamps = np.unique(event_ts.dropna().dt.as_unit("ms").astype("int64").to_numpy())
    spacings = np.diff(stamps)
    if len(spacings) < _MIN_SPACINGS:
        return
    values, counts = np.unique(spacings, return_counts=True)
    dominant = int(values[np.argmax(counts)])
    share = counts.max() / len(spacings)
    if dominant == timeframe_ms(timeframe) or share <= 0.5:
        return
    shown = _duration_label(dominant)
    raise DataValidationError(
        f"the declared timeframe {timeframe} contradicts the data: {share:.0%} of consecutive "
        f"timestamps are {shown} apart, so the file holds {shown} candles; "
        f"pass --timeframe {shown} if that is what it is",
        origin=origin,
        field="event_ts",
    )


def _duration_label(ms: int) -> str:
    """A spacing in timeframe notation ('15m', '1h', '1w'), or in seconds where it is finer."""
    for unit, length in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms % length == 0:
            return f"{ms // length}{unit}"
    return f"{ms / 1000:g}s"


def _funding_frame(raw: pd.DataFrame, symbol: str, origin: str) -> pd.DataFrame:
    columns = _Columns(raw)
    # freqtrade keeps the rate in ``open`` (high/low/close/volume are 0)
    time_column, rate_column = columns.require(
        [_FUNDING_TIME_COLUMNS, (*_FUNDING_RATE_COLUMNS, "open")], origin
    )
    event_ts = _timestamps(columns[time_column], origin, time_column)
    frame = pd.DataFrame(
        {
            "symbol": np.full(len(event_ts), symbol, dtype=object),
            "event_ts": event_ts,
            "available_at": event_ts.copy(),  # the rate is known at settlement
            "funding_rate": _floats(columns[rate_column], origin, rate_column),
        }
    )
    return frame.loc[:, list(COLUMNS[Dataset.FUNDING])]


def _floats(series: pd.Series, origin: str, field: str) -> np.ndarray:
    """The column as float64; cells that are not numbers become NaN, a column of none is an error."""
    if is_numeric_dtype(series.dtype) and not is_bool_dtype(series.dtype):
        return series.to_numpy(dtype="float64", na_value=np.nan)
    values = pd.to_numeric(series, errors="coerce")
    if values.isna().all() and series.notna().any():
        first = series.dropna().iloc[0]
        raise DataValidationError(
            f"no numbers in column (first value {first!r})", origin=origin, field=field
        )
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _timestamps(series: pd.Series, origin: str, field: str) -> pd.Series:
    """The column as datetime64[ns, UTC]: naive means UTC; numbers are epoch s/ms/us/ns by magnitude."""
    dtype = series.dtype
    try:
        if isinstance(dtype, pd.DatetimeTZDtype):
            parsed = series.dt.tz_convert("UTC")
        elif is_datetime64_dtype(dtype):
            parsed = series.dt.tz_localize("UTC")
        elif is_numeric_dtype(dtype) and not is_bool_dtype(dtype):
            parsed = from_epoch(series)
        else:
            parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
            if parsed.isna().all():
                parsed = from_epoch(pd.to_numeric(series, errors="coerce"))
    except (ValueError, OverflowError, TypeError) as exc:  # OutOfBoundsDatetime is a ValueError
        raise DataValidationError(
            f"cannot read timestamps: {exc}", origin=origin, field=field
        ) from exc
    if parsed.isna().all() and series.notna().any():
        first = series.dropna().iloc[0]
        raise DataValidationError(
            f"no readable timestamps (first value {first!r})", origin=origin, field=field
        )
    normalized: pd.Series = parsed.dt.as_unit("ns").rename(None)
    return normalized
