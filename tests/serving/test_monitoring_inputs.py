"""The drift step's feature rows: the kinds' tables joined on their keys, from a start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.build import write_view_table
from serving.monitoring_inputs import feature_files, feature_history
from sextant.settings import load_settings

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


def _tables(n: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    """One frame per feature table: the same keys (a bar per hour per symbol), own columns."""
    opens = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    keys = pd.DataFrame(
        {
            "symbol": np.repeat(SYMBOLS, n),
            "event_ts": np.tile(opens, len(SYMBOLS)),
            "available_at": np.tile(opens + pd.Timedelta(hours=1), len(SYMBOLS)),
        }
    )
    frames = []
    for k in range(3):
        values = rng.normal(size=(len(keys), 2))
        values[rng.random(len(keys)) < 0.1, 0] = np.nan
        frames.append(keys.assign(**{f"f{k}a": values[:, 0], f"f{k}b": values[:, 1]}))
    return frames


def _expected(frames: list[pd.DataFrame], start: pd.Timestamp) -> pd.DataFrame:
    keys = ["symbol", "event_ts", "available_at"]
    merged = frames[0]
    for frame in frames[1:]:
        merged = merged.merge(frame, on=keys, how="inner")
    merged = merged[merged["available_at"] >= start].drop(columns=["event_ts"])
    return merged.sort_values(["symbol", "available_at"], kind="stable").reset_index(drop=True)


def test_feature_history_joins_the_tables_on_their_keys_aligned_or_not(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, symbols=SYMBOLS)
    settings.paths.features_dir.mkdir(parents=True)
    paths = feature_files(settings)
    frames = _tables(300, np.random.default_rng(4))
    start = pd.Timestamp("2024-01-05", tz="UTC")
    # aligned: the tables as a build writes them (same keys, same order): put side by side
    for path, frame in zip(paths, frames, strict=True):
        write_view_table(path, frame)
    aligned = feature_history(settings, list(SYMBOLS), start.to_pydatetime())
    pd.testing.assert_frame_equal(aligned, _expected(frames, start))
    # not aligned: one table lacks rows, another holds an extra one and its rows are unordered
    # (written as is): joined on the keys
    frames[1] = frames[1].iloc[::2]
    extra = frames[2].iloc[[5]].assign(available_at=pd.Timestamp("2030-01-01", tz="UTC"))
    frames[2] = pd.concat([frames[2], extra]).sample(frac=1.0, random_state=1)
    for path, frame in zip(paths, frames, strict=True):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    joined = feature_history(settings, list(SYMBOLS), start.to_pydatetime())
    pd.testing.assert_frame_equal(joined, _expected(frames, start))
    assert len(joined) < len(aligned)
    # chosen symbols and columns only
    some = feature_history(settings, ["ETH/USDT"], start.to_pydatetime(), columns=["f0a", "f2b"])
    expected = _expected(frames, start)
    expected = expected[expected["symbol"] == "ETH/USDT"][["symbol", "available_at", "f0a", "f2b"]]
    pd.testing.assert_frame_equal(some, expected.reset_index(drop=True))


def test_feature_history_decodes_the_recent_row_groups_and_reads_late_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables written as a build writes them (time-major) in small row groups: only the last
    groups reach a recent start (the others are skipped by their statistics), and the rows
    read equal a whole read filtered; a row that arrives late (an earlier bar close, written
    into an earlier group) or is rewritten in the window is read as it now is."""
    import features.build

    monkeypatch.setattr(features.build, "ROW_GROUP_ROWS", 60)
    settings = load_settings(home=tmp_path, symbols=SYMBOLS)
    settings.paths.features_dir.mkdir(parents=True)
    paths = feature_files(settings)
    frames = _tables(300, np.random.default_rng(7))
    start = pd.Timestamp("2024-01-12", tz="UTC")  # the last 36 bar closes of 300
    late = frames[0]["available_at"] == start + pd.Timedelta(hours=5)
    for path, frame in zip(paths, frames, strict=True):
        write_view_table(path, frame[~late.to_numpy()])  # that bar's rows not built yet
    for path in paths:
        stats = pq.ParquetFile(path).metadata
        column = stats.schema.to_arrow_schema().get_field_index("available_at")
        reaching = [
            g
            for g in range(stats.num_row_groups)
            if stats.row_group(g).column(column).statistics.max >= start
        ]
        assert stats.num_row_groups == 15 and reaching == [13, 14]  # 108 rows of 897 from start
    before = feature_history(settings, list(SYMBOLS), start.to_pydatetime())
    pd.testing.assert_frame_equal(before, _expected([f[~late.to_numpy()] for f in frames], start))
    # the late bar arrives and one row in the window is rewritten
    frames[1].loc[late.to_numpy(), "f1a"] = 123.0
    inside = frames[2].index[frames[2]["available_at"] == start + pd.Timedelta(hours=30)][0]
    frames[2].loc[inside, "f2b"] = -7.0
    for path, frame in zip(paths, frames, strict=True):
        write_view_table(path, frame)
    after = feature_history(settings, list(SYMBOLS), start.to_pydatetime())
    pd.testing.assert_frame_equal(after, _expected(frames, start))
    assert len(after) == len(before) + len(SYMBOLS)
    assert (after["f1a"] == 123.0).sum() == len(SYMBOLS) and (after["f2b"] == -7.0).sum() == 1
