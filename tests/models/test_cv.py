"""Purged walk-forward CV: no label leaks into a test block, time order, partition, determinism."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.labels import forward_labels
from models.cv import Fold, purged_walk_forward
from sextant.errors import ConfigError, DataValidationError
from tests.features.ingest.factories import candle_frame

HOUR = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def hourly(n: int, *, repeat: int = 1) -> tuple[pd.Series, pd.Series]:
    """``repeat`` symbols on the same n hourly decision times, labels 4 bars long."""
    decision = pd.Series(np.repeat(pd.date_range(T0, periods=n, freq="h"), repeat))
    return decision, decision + 4 * HOUR


def test_known_layout_expanding() -> None:
    decision, label_end = hourly(100)

    folds = purged_walk_forward(
        decision, label_end, n_splits=3, test_size=10, min_train_size=50,
        embargo=6 * HOUR, min_embargo=4 * HOUR,
    )  # fmt: skip

    assert [f.test.tolist() for f in folds] == [
        list(range(70, 80)),
        list(range(80, 90)),
        list(range(90, 100)),
    ]
    # decision < test_start - 6h keeps rows up to test_start - 7h; labels end 3h before the block
    assert [f.train.tolist() for f in folds] == [
        list(range(0, 64)),
        list(range(0, 74)),
        list(range(0, 84)),
    ]
    assert folds[0].train_end == T0 + 63 * HOUR and folds[0].test_start == T0 + 70 * HOUR
    assert folds[2].test_end == T0 + 99 * HOUR
    assert [f.n_purged for f in folds] == [6, 6, 6]


def test_purge_drops_long_labels_that_the_embargo_alone_would_keep() -> None:
    decision, label_end = hourly(100)
    label_end.iloc[[10, 50]] += 30 * HOUR  # row 50's label now ends at 84h, inside the first block

    folds = purged_walk_forward(
        decision, label_end, n_splits=2, test_size=10, min_train_size=50,
        embargo=4 * HOUR, min_embargo=4 * HOUR,
    )  # fmt: skip

    assert 50 not in folds[0].train and 10 in folds[0].train
    assert folds[0].n_purged == 5
    assert 50 in folds[1].train  # 84h < 90h: clear of the second block


def test_sliding_window_keeps_latest_timestamps() -> None:
    decision, label_end = hourly(100, repeat=2)

    folds = purged_walk_forward(
        decision, label_end, n_splits=2, test_size=10, min_train_size=20, max_train_size=30,
        embargo=4 * HOUR, min_embargo=4 * HOUR, window="sliding",
    )  # fmt: skip

    first = folds[0]
    assert first.test_start == T0 + 80 * HOUR
    assert first.train_start == T0 + 46 * HOUR and first.train_end == T0 + 75 * HOUR
    assert len(first.train) == 60  # 30 timestamps x 2 symbols


def test_default_test_size_uses_all_data_after_minimum_training() -> None:
    decision, label_end = hourly(100)

    folds = purged_walk_forward(
        decision, label_end, n_splits=4, min_train_size=40, embargo=4 * HOUR, min_embargo=4 * HOUR
    )

    # 40 training timestamps plus a 4-hour embargo: the first block may start at index 44
    assert [len(f.test) for f in folds] == [14, 14, 14, 14]
    assert folds[0].test_start == T0 + 44 * HOUR
    assert len(folds[0].train) == 40


def test_folds_from_real_labels_of_two_symbols() -> None:
    frames = [candle_frame(300, symbol=s, seed=i) for i, s in enumerate(("BTC/USDT", "ETH/USDT"))]
    labels = pd.concat([forward_labels(f, "1h") for f in frames], ignore_index=True).dropna()

    folds = purged_walk_forward(
        labels["available_at"], labels["label_available_at"], n_splits=3, test_size=24,
        min_train_size=100, embargo=4 * HOUR, min_embargo=4 * HOUR,
    )  # fmt: skip

    for fold in folds:
        train, test = labels.iloc[fold.train], labels.iloc[fold.test]
        assert train["label_available_at"].max() < test["available_at"].min()
        assert set(test["symbol"]) == {"BTC/USDT", "ETH/USDT"}
        assert len(test) == 48


def test_embargo_shorter_than_horizon_is_a_config_error() -> None:
    decision, label_end = hourly(100)

    with pytest.raises(ConfigError, match=r"embargo 0 days 02:00:00 .* horizon 0 days 04:00:00"):
        purged_walk_forward(
            decision,
            label_end,
            n_splits=2,
            min_train_size=10,
            embargo=2 * HOUR,
            min_embargo=4 * HOUR,
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_splits": 0}, "n_splits"),
        ({"test_size": 0}, "test_size"),
        ({"window": "sliding"}, "max_train_size"),
        ({"max_train_size": 50}, "only applies to window='sliding'"),
        ({"window": "sliding", "max_train_size": 5}, "smaller than min_train_size"),
    ],
)
def test_inconsistent_settings_are_config_errors(kwargs: dict[str, object], match: str) -> None:
    decision, label_end = hourly(100)
    options: dict[str, object] = {"n_splits": 2, "min_train_size": 10, "embargo": 4 * HOUR}
    options.update(kwargs)

    with pytest.raises(ConfigError, match=match):
        purged_walk_forward(decision, label_end, min_embargo=4 * HOUR, **options)  # type: ignore[arg-type]


def test_too_little_data_names_needed_and_available() -> None:
    decision, label_end = hourly(60, repeat=2)

    with pytest.raises(
        DataValidationError, match=r"at least 74 distinct decision timestamps.*have 60 .*120 rows"
    ):
        purged_walk_forward(
            decision, label_end, n_splits=3, test_size=10, min_train_size=40,
            embargo=4 * HOUR, min_embargo=4 * HOUR,
        )  # fmt: skip


def test_naive_or_missing_timestamps_are_rejected() -> None:
    decision, label_end = hourly(50)

    with pytest.raises(DataValidationError, match="tz-aware"):
        purged_walk_forward(
            decision.dt.tz_localize(None), label_end, n_splits=2, min_train_size=10,
            embargo=4 * HOUR, min_embargo=4 * HOUR,
        )  # fmt: skip
    with pytest.raises(DataValidationError, match="1 missing timestamps, first at row 3"):
        purged_walk_forward(
            decision, label_end.where(label_end.index != 3), n_splits=2, min_train_size=10,
            embargo=4 * HOUR, min_embargo=4 * HOUR,
        )  # fmt: skip


# --- properties ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    decision: pd.Series
    label_end: pd.Series
    horizon_hours: int


@st.composite
def panels(draw: st.DrawFn) -> Panel:
    """Rows of up to 3 symbols on an hourly grid with gaps, in shuffled order, labels of 1..h bars."""
    n_times = draw(st.integers(40, 160))
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 5]), min_size=n_times, max_size=n_times))
    times = T0 + pd.to_timedelta(np.cumsum(steps), unit="h")
    horizon = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    per_time = rng.integers(1, 4, size=n_times)
    decision = pd.Series(np.repeat(times, per_time))
    lengths = rng.integers(1, horizon + 1, size=len(decision))
    label_end = decision + pd.to_timedelta(lengths, unit="h")
    order = rng.permutation(len(decision))
    return Panel(
        decision.iloc[order].reset_index(drop=True),
        label_end.iloc[order].reset_index(drop=True),
        horizon,
    )


@st.composite
def split_settings(draw: st.DrawFn) -> dict[str, object]:
    window = draw(st.sampled_from(["expanding", "sliding"]))
    min_train = draw(st.integers(1, 15))
    options: dict[str, object] = {
        "n_splits": draw(st.integers(1, 5)),
        "test_size": draw(st.one_of(st.none(), st.integers(1, 12))),
        "min_train_size": min_train,
        "window": window,
        "extra_embargo_hours": draw(st.integers(0, 4)),
    }
    if window == "sliding":
        options["max_train_size"] = draw(st.integers(min_train, min_train + 20))
    return options


def naive_utc(values: pd.Series) -> np.ndarray:
    """datetime64[ns] in UTC, so the checks below compare numbers, not Timestamp objects."""
    return values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()


def run_split(panel: Panel, options: dict[str, object]) -> list[Fold]:
    kwargs = dict(options)
    extra = int(kwargs.pop("extra_embargo_hours"))  # type: ignore[call-overload]
    return purged_walk_forward(
        panel.decision, panel.label_end, embargo=(panel.horizon_hours + extra) * HOUR,
        min_embargo=panel.horizon_hours * HOUR, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(panel=panels(), options=split_settings())
def test_split_properties(panel: Panel, options: dict[str, object]) -> None:
    try:
        folds = run_split(panel, options)
    except DataValidationError:
        return  # too little data for these settings; the error path has its own tests
    decision, label_end = naive_utc(panel.decision), naive_utc(panel.label_end)
    embargo = ((panel.horizon_hours + int(options["extra_embargo_hours"])) * HOUR).to_numpy()  # type: ignore[call-overload]
    times = np.unique(decision)

    # test blocks: consecutive, equal, non-overlapping, and together a suffix of the timeline
    blocks = [np.unique(decision[f.test]) for f in folds]
    joined = np.concatenate(blocks)
    assert np.array_equal(joined, times[len(times) - len(joined) :])
    assert len({len(b) for b in blocks}) == 1
    assert len(folds) == options["n_splits"]
    for fold in folds:
        test_times = np.unique(decision[fold.test])
        # one timestamp never straddles: every row at a test time is in the test block
        assert np.array_equal(np.flatnonzero(np.isin(decision, test_times)), fold.test)
        train_d, train_l = decision[fold.train], label_end[fold.train]
        test_start = decision[fold.test].min()
        # train strictly before test, purged and embargoed
        assert train_d.max() < test_start
        assert train_l.max() < test_start
        assert (train_d < test_start - embargo).all()
        # no training label window overlaps any test row's [decision, label_end]
        test_d, test_l = decision[fold.test], label_end[fold.test]
        overlap = (train_d[:, None] <= test_l[None, :]) & (test_d[None, :] <= train_l[:, None])
        assert not overlap.any()
        # nothing eligible is thrown away (expanding) and the window bounds hold
        n_train_times = len(np.unique(train_d))
        assert n_train_times >= int(options["min_train_size"])  # type: ignore[call-overload]
        if options["window"] == "expanding":
            eligible = (label_end < test_start) & (decision < test_start - embargo)
            assert np.array_equal(np.flatnonzero(eligible), fold.train)
        else:
            assert n_train_times <= int(options["max_train_size"])  # type: ignore[call-overload]
        assert fold.train_end == pd.Timestamp(train_d.max()).tz_localize("UTC")
        assert fold.test_end == pd.Timestamp(test_d.max()).tz_localize("UTC")


@settings(max_examples=40, deadline=None)
@given(panel=panels(), options=split_settings(), seed=st.integers(0, 2**16))
def test_folds_are_deterministic_and_ignore_row_order(
    panel: Panel, options: dict[str, object], seed: int
) -> None:
    try:
        first = run_split(panel, options)
    except DataValidationError:
        return
    order = np.random.default_rng(seed).permutation(len(panel.decision))
    shuffled = Panel(
        panel.decision.iloc[order].reset_index(drop=True),
        panel.label_end.iloc[order].reset_index(drop=True),
        panel.horizon_hours,
    )

    again = run_split(panel, options)
    moved = run_split(shuffled, options)

    for a, b, c in zip(first, again, moved, strict=True):
        assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
        assert np.array_equal(np.sort(order[c.train]), a.train)
        assert np.array_equal(np.sort(order[c.test]), a.test)
        assert (a.train_start, a.train_end, a.test_start, a.test_end) == (
            c.train_start, c.train_end, c.test_start, c.test_end,
        )  # fmt: skip
