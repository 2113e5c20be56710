"""Rebuild the bundled sample (features/ingest/sample_data) from the shared data folder.

Kept for reproducibility; the package never imports it. Every value is copied unchanged: candles
and funding are sliced by date and converted to parquet (zstd), the Fear & Greed CSV keeps its
original lines, and the four news CSVs are merged into one file of distinct headlines.

    python scripts/build_sample_data.py [--shared ../shared/data] [--out features/ingest/sample_data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as pa_feather
import pyarrow.parquet as pa_parquet

REPO = Path(__file__).resolve().parents[1]
START = pd.Timestamp("2023-01-01", tz="UTC")
END = pd.Timestamp("2024-01-11", tz="UTC")  # exclusive: the period is 2023-01-01 .. 2024-01-10
PAIRS = ("BTC_USDT", "ETH_USDT")
NEWS_FILES = (
    "2024-04-05_24h_news.csv",
    "2024-04-05_30d_news.csv",
    "2024-05-18_24h_news_with_sentiment.csv",
    "2024-05-18_30d_news.csv",
)


def main(argv: list[str] | None = None) -> int:
    """Write every sample file and print one summary line per file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "features" / "ingest" / "sample_data")
    args = parser.parse_args(argv)
    shared: Path = args.shared
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    for pair in PAIRS:
        table = _sliced(
            pa_feather.read_table(
                shared / "daisybum_cryptotradingbot" / "binance" / f"{pair}-1h.feather"
            )
        )
        _write_parquet(table, out / f"{pair}-1h.parquet")

    for pair in PAIRS:
        source = (
            shared
            / "roshan7869_algotrading"
            / "binance"
            / "futures"
            / f"{pair}_USDT-1h-funding_rate.feather"
        )
        table = _sliced(pa_feather.read_table(source))
        for unused in ("high", "low", "close", "volume"):
            if pc.any(pc.not_equal(table[unused], 0.0)).as_py():
                raise SystemExit(
                    f"{source}: column {unused} is not all zero; the freqtrade layout changed"
                )
        # freqtrade keeps the funding rate in ``open``: name it for what it is
        funding = pa.table({"date": table["date"], "funding_rate": table["open"]})
        _write_parquet(funding, out / f"{pair}_USDT-1h-funding_rate.parquet")

    _write_fear_greed(shared / "fear_greed" / "fng.csv", out / "fear_greed.csv")
    _write_news([shared / "news_ualh" / name for name in NEWS_FILES], out / "news_ualh.csv")

    for path in sorted(out.iterdir()):
        if path.suffix in {".parquet", ".csv"}:
            print(_summary(path))
    return 0


def _sliced(table: pa.Table) -> pa.Table:
    dates = table["date"]
    start = pa.scalar(START, type=dates.type)
    end = pa.scalar(END, type=dates.type)
    return table.filter(
        pc.and_(pc.greater_equal(dates, start), pc.less(dates, end))
    ).replace_schema_metadata(None)


def _write_parquet(table: pa.Table, path: Path) -> None:
    pa_parquet.write_table(table, path, compression="zstd", compression_level=19)


def _write_fear_greed(source: Path, target: Path) -> None:
    """Keep the header and the lines of the period, byte for byte."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    first, last = START.strftime("%Y-%m-%d"), (END - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    kept = [line for line in lines[1:] if first <= line.split(",", 1)[0] <= last]
    target.write_text(lines[0] + "".join(kept), encoding="utf-8")


def _write_news(sources: list[Path], target: Path) -> None:
    """One row per distinct headline: its earliest date, and its sentiment where any file has one."""
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in sources]
    news = pd.concat(frames, ignore_index=True).fillna("")  # the 30d files have no sentiment column
    news = news.sort_values("date", kind="stable")
    merged = news.groupby("headline", sort=False).agg(
        date=("date", "first"),
        description=("description", "first"),
        sentiment=("sentiment", lambda s: next((v for v in s if v != ""), "")),
    )
    merged = merged.reset_index().loc[:, ["date", "headline", "description", "sentiment"]]
    merged.to_csv(target, index=False, lineterminator="\n")


def _summary(path: Path) -> str:
    if path.suffix == ".parquet":
        dates = pa_parquet.read_table(path, columns=["date"])["date"].to_pandas()
    else:
        dates = pd.read_csv(path, usecols=["date"])["date"]
    return f"{path.name}\t{len(dates)} rows\t{dates.min()} -> {dates.max()}\t{path.stat().st_size} bytes"


if __name__ == "__main__":
    sys.exit(main())
