"""Put the online store in the state it had at a past bar close, to replay the service over history.

The decision engine reads only the latest online vectors, so a past bar can be decided by the
service only after the online store is brought back to that bar. What `sextant features
materialize` would have left there at a bar close ``t`` is, per service vector view and symbol,
the packed row with the latest ``available_at`` at or before ``t`` (the features flow
materializes every new bar). `OnlineReplay` reads those rows from the home's packed vector
tables once per window and writes each bar's rows through Feast's own online write path
(``FeatureStore.write_to_online_store``: the conversion and upsert that materialization ends
with), which costs a few milliseconds per bar where a ``materialize`` per bar costs about a
second (a query of the offline store per view).

Only the service vector views (`features.definitions.SERVICE_VECTOR_VIEWS`, what the engine
reads) are written; the per-kind views keep what they hold. The writes replace what the online
store holds, so replay into a copy of the online store (a ``feast_online_store`` setting with its
own sqlite path) when other readers rely on the latest vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
import pyarrow.dataset as ds

from features.definitions import SERVICE_VECTOR_VIEWS
from features.feast_store import FeastStore
from sextant.contracts import ONLINE_SERVICES
from sextant.errors import ConfigError, DataValidationError

__all__ = ["OnlineReplay"]

_KEYS = ["symbol", "available_at"]


class OnlineReplay:
    """The packed online rows of ``symbols`` for the bar closes ``first`` .. ``last`` (UTC).

    ``load(t)`` writes each view's latest row per symbol at or before ``t`` into the online
    store; ``bars`` are the bar closes of the window at which the decision vector has a row.
    """

    def __init__(
        self,
        feast: FeastStore,
        symbols: Sequence[str],
        first: datetime,
        last: datetime,
    ) -> None:
        for name, moment in (("first", first), ("last", last)):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ConfigError(f"{name} must be timezone-aware (UTC), got {moment.isoformat()}")
        if last < first:
            raise ConfigError(f"the window ends ({last.isoformat()}) before it starts")
        if not symbols:
            raise ConfigError("no symbols to replay")
        self.feast = feast
        self.symbols = tuple(symbols)
        self._views = {service: SERVICE_VECTOR_VIEWS[service] for service in ONLINE_SERVICES}
        self._rows = {
            view: self._window_rows(view, pd.Timestamp(first), pd.Timestamp(last))
            for view in self._views.values()
        }

    @property
    def bars(self) -> tuple[datetime, ...]:
        """The window's bar closes at which some symbol's decision vector has a row."""
        decision = self._rows[self._views[ONLINE_SERVICES[0]]]
        stamps = sorted(set(decision["available_at"]))
        return tuple(pd.Timestamp(s).to_pydatetime() for s in stamps)

    def load(self, bar_close: datetime) -> int:
        """Write the online state of ``bar_close``; returns how many rows were written."""
        at = pd.Timestamp(bar_close)
        if at.tzinfo is None:
            raise ConfigError(f"bar_close must be timezone-aware (UTC), got {bar_close}")
        written = 0
        for view, rows in self._rows.items():
            known = rows[rows["available_at"] <= at]
            latest = known.groupby("symbol", sort=False)["available_at"].idxmax()
            chosen = known.loc[latest.to_numpy()]
            if len(chosen) != len(self.symbols):
                absent = sorted(set(self.symbols) - set(chosen["symbol"]))
                raise DataValidationError(
                    f"{view}: no packed row at or before {at.isoformat()} for "
                    f"{', '.join(absent)} in {self.feast.table_path(view)}",
                    field="available_at",
                )
            self.feast.store.write_to_online_store(view, chosen.reset_index(drop=True))
            written += len(chosen)
        return written

    def _window_rows(self, view: str, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
        """Rows of ``view`` for the window: those in [first, last] and, per symbol, the latest
        one at or before ``first`` (what is online at the first bar)."""
        path = self.feast.table_path(view)
        if not path.is_file():
            raise DataValidationError(
                f"no packed vector table {path}; run `sextant features build`", field=view
            )
        dataset = ds.dataset(path, format="parquet")
        wanted = ds.field("symbol").isin(list(self.symbols))
        keys = dataset.to_table(columns=_KEYS, filter=wanted).to_pandas()
        before = keys[keys["available_at"] <= first].groupby("symbol")["available_at"].max()
        start = before.min() if len(before) == len(self.symbols) else keys["available_at"].min()
        window = wanted & (ds.field("available_at") >= start) & (ds.field("available_at") <= last)
        rows: pd.DataFrame = dataset.to_table(filter=window).to_pandas()
        return rows.reset_index(drop=True)
