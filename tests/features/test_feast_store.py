"""Feast round trip on small synthetic tables: apply, materialize, point-in-time joins, online reads."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.definitions import (
    FEATURE_SERVICES,
    FEATURE_VIEWS,
    FEATURES,
    SERVICE_VECTOR_VIEWS,
    Kind,
    service_features,
    vector_layout,
)
from features.feast_store import (
    FeastStore,
    ViewReport,
    feast_config,
    online_features,
    training_frame,
)
from features.vectors import write_service_vectors
from sextant.errors import ConfigError, DataValidationError
from sextant.settings import Settings, load_settings

T0 = pd.Timestamp("2024-01-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)
# BTC's bars start at T0, ETH's a day later; ETH's values are offset by 1000
STARTS = {"BTC/USDT": (T0, 0.0), "ETH/USDT": (T0 + 24 * HOUR, 1000.0)}
SETTLEMENT_LAG = pd.Timedelta(minutes=1)  # funding is known a minute after the 8-hourly settlement
BARS = 100
VIEWS = len(FEATURE_VIEWS) + len(SERVICE_VECTOR_VIEWS)


def names(kind: Kind) -> list[str]:
    return [f.name for f in FEATURES if f.kind is kind]


def bar_value(symbol: str, bar: int, feature: int, scale: float = 1.0) -> float:
    """Value of a bar feature: known per symbol, bar and position in its view."""
    return scale * (STARTS[symbol][1] + bar + feature / 100)


def build_tables(features_dir: Path, *, bars: int = BARS, scale: float = 1.0) -> None:
    """The layout `sextant features build` writes: one parquet per view, all symbols in it."""
    features_dir.mkdir(parents=True, exist_ok=True)
    for kind in Kind:
        frames = []
        for symbol, (start, _) in STARTS.items():
            if kind is Kind.ALT:  # one row per funding settlement, known after the candle close
                rows = np.arange(bars // 8 + 1)
                event_ts = start + 8 * HOUR * rows
                available_at = event_ts + SETTLEMENT_LAG
            else:
                rows = np.arange(bars)
                event_ts = start + HOUR * rows
                available_at = event_ts + HOUR
            frame = pd.DataFrame(
                {"symbol": symbol, "event_ts": event_ts, "available_at": available_at}
            )
            for j, name in enumerate(names(kind)):
                frame[name] = [bar_value(symbol, int(i), j, scale) for i in rows]
            if kind is Kind.ALT and symbol == "ETH/USDT":
                frame["news_sentiment_24h"] = np.nan  # no headlines: null, as the build writes it
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        table.to_parquet(features_dir / f"{FEATURE_VIEWS[kind]}.parquet", index=False)
    write_service_vectors(features_dir)


def settings_for(home: Path) -> Settings:
    return load_settings(home=home)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeastStore, list[ViewReport]]:
    """A home with built tables, applied and materialized once (shared: Feast is slow to start)."""
    settings = settings_for(tmp_path_factory.mktemp("feast") / "home")
    build_tables(settings.paths.features_dir)
    store = FeastStore(settings)
    return store, store.materialize()


@pytest.fixture(scope="module")
def store(built: tuple[FeastStore, list[ViewReport]]) -> FeastStore:
    return built[0]


def entities(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": [s for s, _ in rows],
            "event_timestamp": pd.to_datetime([t for _, t in rows], utc=True, format="ISO8601"),
        }
    )


def test_config_follows_the_home(tmp_path: Path) -> None:
    # Act
    config = feast_config(settings_for(tmp_path / "h"))

    # Assert
    assert config.registry.path == str(tmp_path / "h" / "feast" / "registry.db")
    assert config.online_store.path == str(tmp_path / "h" / "feast" / "online.db")
    assert (config.offline_store.type, config.entity_key_serialization_version) == ("duckdb", 3)


def test_first_materialize_backfills_every_row(
    built: tuple[FeastStore, list[ViewReport]],
) -> None:
    # Arrange
    _, reports = built
    first_alt = T0 + SETTLEMENT_LAG
    last_bar = T0 + 24 * HOUR + BARS * HOUR  # ETH's last bar close

    # Act
    by_view = {r.view: r for r in reports}

    # Assert
    assert [r.incremental for r in reports] == [False] * VIEWS
    assert {v: r.rows for v, r in by_view.items()} == {
        "ta_features": 2 * BARS,
        "stat_features": 2 * BARS,
        "alt_features": 2 * (BARS // 8 + 1),
        # one packed vector per service and bar close
        **{view: 2 * BARS for view in SERVICE_VECTOR_VIEWS.values()},
    }
    assert by_view["ta_features"].start == T0 + HOUR
    assert by_view["ta_features"].end == last_bar + pd.Timedelta(microseconds=1)
    assert by_view["alt_features"].start == first_alt


def test_an_entity_gets_the_row_known_at_its_time_never_a_later_one(store: FeastStore) -> None:
    # Arrange: BTC's bar 4 closes at 05:00, bar 5 at 06:00; ETH has no data before day 2
    asked = entities(
        ("BTC/USDT", "2024-01-01 05:30"),
        ("ETH/USDT", "2024-01-01 05:30"),
        ("BTC/USDT", "2024-01-01 05:00"),
        ("BTC/USDT", "2024-01-01 04:59:59"),
    )

    # Act
    frame = store.training_frame("garch_vol_v1", entity_df=asked)

    # Assert: rows in the order asked, log_return_1 is the stat view's first feature
    assert frame["symbol"].tolist() == asked["symbol"].tolist()
    assert frame["event_timestamp"].tolist() == asked["event_timestamp"].tolist()
    assert frame["log_return_1"].tolist()[::2] == [4.0, 4.0]
    assert np.isnan(frame["log_return_1"].iloc[1])
    assert frame["log_return_1"].iloc[3] == 3.0


def test_training_rows_are_every_bar_close_with_registry_column_order(store: FeastStore) -> None:
    # Arrange: lstm_direction_v1 interleaves stat, ta and alt features
    start, end = T0 + 20 * HOUR, T0 + 30 * HOUR
    wanted = service_features("lstm_direction_v1")

    # Act
    frame = store.training_frame("lstm_direction_v1", ["ETH/USDT", "BTC/USDT"], start, end)

    # Assert
    assert frame.columns.tolist() == ["symbol", "event_timestamp", *wanted]
    assert str(frame["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    eth_closes = pd.date_range(T0 + 25 * HOUR, end, freq=HOUR, tz="UTC")  # ETH bar 0 closes 25:00
    btc_closes = pd.date_range(start, end, freq=HOUR, tz="UTC")
    assert frame["symbol"].tolist() == ["ETH/USDT"] * len(eth_closes) + ["BTC/USDT"] * len(
        btc_closes
    )
    assert frame["event_timestamp"].tolist() == [*eth_closes, *btc_closes]
    btc = frame[frame["symbol"] == "BTC/USDT"]
    bars = ((btc["event_timestamp"] - T0) / HOUR - 1).astype(int)
    rsi = names(Kind.TA).index("rsi_14")
    assert btc["rsi_14"].tolist() == [bar_value("BTC/USDT", b, rsi) for b in bars]
    hour_cos = names(Kind.STAT).index("hour_cos")
    assert btc["hour_cos"].tolist() == [bar_value("BTC/USDT", b, hour_cos) for b in bars]


def test_an_alt_row_known_after_a_candle_close_does_not_leak_into_it(store: FeastStore) -> None:
    # Arrange: funding settled at 08:00 is known at 08:01, after the 08:00 candle close
    asked = entities(("BTC/USDT", "2024-01-01 08:00"), ("BTC/USDT", "2024-01-01 08:01"))

    # Act
    frame = store.training_frame("xgb_direction_v1", entity_df=asked)

    # Assert: settlement 0 (known 00:01) at the close, settlement 1 from 08:01 on
    assert frame["funding_rate"].tolist() == [0.0, 1.0]
    assert frame["rsi_14"].tolist() == [7.0, 7.0]


def test_online_read_equals_the_training_row_of_the_latest_bar_close(store: FeastStore) -> None:
    # Arrange: the latest bar closes (ETH's bars start a day later, so it ends a day later)
    symbols = ["ETH/USDT", "BTC/USDT"]
    closes = {"ETH/USDT": T0 + (24 + BARS) * HOUR, "BTC/USDT": T0 + BARS * HOUR}
    asked = entities(*((s, closes[s].isoformat()) for s in symbols))

    for service, wanted in FEATURE_SERVICES.items():
        # Act
        frame = store.online_features(service, symbols)
        array = store.online_array(service, symbols)
        offline = store.training_frame(service, entity_df=asked)

        # Assert
        assert frame.columns.tolist() == ["symbol", *wanted]
        assert frame["symbol"].tolist() == symbols
        expected = offline[list(wanted)].to_numpy()
        assert np.array_equal(frame[list(wanted)].to_numpy(), expected, equal_nan=True), service
        assert np.array_equal(array, expected, equal_nan=True), service
    # each vector says which bar close it describes
    assert store.online_vectors("garch_vol_v1", symbols).as_of == tuple(closes[s] for s in symbols)
    # the funding settlement published after BTC's last close is not in its vector, null stays null
    latest = store.online_features("xgb_direction_v1", symbols)
    assert latest["funding_rate"].tolist() == [12.0 + 1000.0, 12.0]
    assert pd.isna(latest.loc[0, "news_sentiment_24h"])


def test_packed_vectors_equal_feasts_per_feature_read_and_training_frame(
    store: FeastStore,
) -> None:
    # Arrange: every bar close of both symbols, as the training frame sees them
    vectors = {
        service: pd.read_parquet(store.table_path(view))
        for service, view in SERVICE_VECTOR_VIEWS.items()
    }

    for service, table in vectors.items():
        wanted = service_features(service)
        layout = vector_layout(service)
        asked = pd.DataFrame({"symbol": table["symbol"], "event_timestamp": table["available_at"]})

        # Act
        offline = store.training_frame(service, entity_df=asked)
        per_feature = store.online_per_feature(service, ["ETH/USDT", "BTC/USDT"])
        packed = store.online_array(service, ["ETH/USDT", "BTC/USDT"])

        # Assert: each packed row holds Feast's point-in-time rows of its symbol's last `window`
        # bar closes, oldest first (NaN before the first); the online read's latest row agrees
        # with Feast reading the service feature by feature
        rows = offline.groupby("symbol", sort=False)[list(wanted)]
        expected = np.stack(
            [rows.shift(layout.window - 1 - k).to_numpy() for k in range(layout.window)], axis=1
        )
        unpacked = np.stack(table["vector"].to_numpy()).reshape(expected.shape)
        assert np.array_equal(unpacked, expected, equal_nan=True), service
        assert np.array_equal(packed, per_feature, equal_nan=True), service


def test_materialize_again_is_incremental_and_loads_only_new_rows(tmp_path: Path) -> None:
    # Arrange
    settings = settings_for(tmp_path / "home")
    build_tables(settings.paths.features_dir)
    store = FeastStore(settings)
    store.materialize()

    # Act
    unchanged = store.materialize()
    build_tables(settings.paths.features_dir, bars=BARS + 5)  # 5 more bars, 1 more settlement
    appended = store.materialize()

    # Assert
    assert [(r.incremental, r.rows) for r in unchanged] == [(True, 0)] * VIEWS
    assert {r.view: (r.incremental, r.rows, r.start) for r in appended} == {
        "ta_features": (True, 10, T0 + 101 * HOUR),  # BTC's first new bar close
        "stat_features": (True, 10, T0 + 101 * HOUR),
        "alt_features": (True, 2, T0 + 13 * 8 * HOUR + SETTLEMENT_LAG),
        **{v: (True, 10, T0 + 101 * HOUR) for v in SERVICE_VECTOR_VIEWS.values()},
    }
    # BTC's new rows all lie before ETH's previous latest row: a per-view watermark
    # (materialize_incremental) would have skipped them
    online = store.online_features("garch_vol_v1", ["BTC/USDT", "ETH/USDT"])
    assert online["log_return_1"].tolist() == [BARS + 4, 1000 + BARS + 4]


def test_two_homes_in_one_process_each_see_only_their_own_data(
    store: FeastStore, tmp_path: Path
) -> None:
    # Arrange: a second home whose values are negated
    other = settings_for(tmp_path / "other")
    build_tables(other.paths.features_dir, scale=-1.0)
    FeastStore(other).materialize()
    asked = entities(("BTC/USDT", "2024-01-02 00:00"))

    # Act: interleave reads through the module-level functions
    mine = online_features("garch_vol_v1", ["BTC/USDT"], settings=_settings(store))
    theirs = online_features("garch_vol_v1", ["BTC/USDT"], settings=other)
    mine_offline = training_frame("garch_vol_v1", settings=_settings(store), entity_df=asked)
    theirs_offline = training_frame("garch_vol_v1", settings=other, entity_df=asked)

    # Assert
    assert mine["log_return_1"].tolist() == [BARS - 1.0]
    assert theirs["log_return_1"].tolist() == [-(BARS - 1.0)]
    assert mine_offline["log_return_1"].tolist() == [23.0]
    assert theirs_offline["log_return_1"].tolist() == [-23.0]


def test_store_settings_reach_the_feast_config(tmp_path: Path) -> None:
    # Arrange: the scale-out shape (Redis online, another offline engine); no server is needed
    # to build the configuration
    settings = load_settings(
        home=tmp_path / "h",
        feast_online_store={"type": "redis", "connection_string": "cache:6379"},
        feast_offline_store={"type": "file"},
    )

    # Act
    config = feast_config(settings)

    # Assert
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "cache:6379"
    assert config.offline_store.type == "file"
    assert config.registry.path == str(tmp_path / "h" / "feast" / "registry.db")


def test_an_online_store_set_elsewhere_is_the_one_written_and_read(tmp_path: Path) -> None:
    # Arrange: a sqlite online store outside the home
    elsewhere = tmp_path / "shared" / "online.db"
    settings = load_settings(
        home=tmp_path / "h", feast_online_store={"type": "sqlite", "path": str(elsewhere)}
    )
    build_tables(settings.paths.features_dir)

    # Act
    FeastStore(settings).materialize()
    values = online_features("garch_vol_v1", ["BTC/USDT"], settings=settings)

    # Assert
    assert feast_config(settings).online_store.path == str(elsewhere)
    assert elsewhere.is_file() and not (settings.paths.feast_dir / "online.db").exists()
    assert values["log_return_1"].tolist() == [BARS - 1.0]


def test_a_moved_home_reads_its_own_tables(store: FeastStore, tmp_path: Path) -> None:
    # Arrange: a copy of the home (registry included, its paths naming the original tables)
    moved = settings_for(tmp_path / "moved")
    shutil.copytree(store.paths.home, moved.paths.home)
    build_tables(moved.paths.features_dir, scale=-1.0)
    asked = entities(("BTC/USDT", "2024-01-02 00:00"))

    # Act
    frame = FeastStore(moved).training_frame("garch_vol_v1", entity_df=asked)

    # Assert
    assert frame["log_return_1"].tolist() == [-23.0]


def _settings(store: FeastStore) -> Settings:
    return settings_for(store.paths.home)


def test_errors_name_the_problem_and_the_command_to_run(store: FeastStore, tmp_path: Path) -> None:
    # Arrange
    empty = FeastStore(settings_for(tmp_path / "empty"))
    start, end = T0, T0 + 10 * HOUR

    # Act / Assert
    with pytest.raises(ConfigError, match=r"unknown feature service 'xgb_v9'.*garch_vol_v1"):
        store.training_frame("xgb_v9", ["BTC/USDT"], start, end)
    with pytest.raises(DataValidationError, match=r"SOL/USDT.*sextant features build"):
        store.training_frame("garch_vol_v1", ["SOL/USDT"], start, end)
    with pytest.raises(DataValidationError, match=r"SOL/USDT.*sextant features materialize"):
        store.online_features("garch_vol_v1", ["BTC/USDT", "SOL/USDT"])
    with pytest.raises(DataValidationError, match=r"stat_features.*sextant features build"):
        empty.training_frame("garch_vol_v1", ["BTC/USDT"], start, end)
    with pytest.raises(DataValidationError, match=r"ta_features.*sextant features build"):
        empty.materialize()
    with pytest.raises(ConfigError, match=r"no Feast registry.*sextant features materialize"):
        empty.online_features("garch_vol_v1", ["BTC/USDT"])
    broken = FeastStore(settings_for(tmp_path / "broken"))
    build_tables(broken.paths.features_dir)
    pd.read_parquet(broken.table_path("ta_features")).drop(columns="available_at").to_parquet(
        broken.table_path("ta_features")
    )
    with pytest.raises(
        DataValidationError, match=r"lacks column\(s\) available_at.*features build"
    ):
        broken.materialize()
    with pytest.raises(ConfigError, match=r"start must be timezone-aware"):
        store.training_frame("garch_vol_v1", ["BTC/USDT"], datetime(2024, 1, 1), end)


def test_a_vector_table_packed_for_another_feature_list_is_refused(tmp_path: Path) -> None:
    # Arrange: the garch vector table claims a feature order the service does not have
    import pyarrow.parquet as pq

    stale = FeastStore(settings_for(tmp_path / "stale"))
    build_tables(stale.paths.features_dir)
    path = stale.table_path(SERVICE_VECTOR_VIEWS["garch_vol_v1"])
    table = pq.read_table(path)
    pq.write_table(
        table.replace_schema_metadata({b"sextant.features": b'["log_return_1", "gap_pct"]'}),
        path,
    )

    # Act / Assert: nothing is applied or materialized
    with pytest.raises(DataValidationError, match=r"garch_vol_v1.*packed for other features"):
        stale.materialize()
    assert not (stale.paths.feast_dir / "online.db").exists()


def test_a_registry_without_the_vector_views_asks_for_materialize(tmp_path: Path) -> None:
    # Arrange: a home applied with the kind views and services only (an older registry)
    old = FeastStore(settings_for(tmp_path / "old"))
    build_tables(old.paths.features_dir)
    old.paths.feast_dir.mkdir(parents=True)
    declared = old.declarations
    kind_views = [v for v in declared.views if v.name in FEATURE_VIEWS.values()]
    old.store.apply([*declared.entities, *kind_views, *declared.services])

    # Act / Assert
    with pytest.raises(ConfigError, match=r"garch_vol_v1_vector.*sextant features materialize"):
        old.online_array("garch_vol_v1", ["BTC/USDT"])
