"""The evaluation protocol's spans: the reported span takes part in no choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.spans import (
    PURGED,
    REPORTED,
    SELECTION,
    SPAN_COLUMN,
    EvaluationSpans,
    find_reported_start,
    label_spans,
)
from sextant.errors import ConfigError, DataValidationError

HOUR = pd.Timedelta(hours=1)


def _times(n: int) -> pd.Series:
    return pd.Series(pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"))


def test_reported_start_splits_distinct_decision_times_not_rows() -> None:
    # two symbols share every time: the cut falls on a time, so both symbols land on one side
    times = pd.concat([_times(100), _times(100)], ignore_index=True)
    start = find_reported_start(times, 0.3)
    assert start == _times(100).iloc[70]
    assert start.tzinfo is not None


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_reported_fraction_outside_the_open_interval_is_a_config_error(fraction: float) -> None:
    with pytest.raises(ConfigError, match="reported_fraction"):
        find_reported_start(_times(10), fraction)


def test_too_few_times_to_split_names_the_count() -> None:
    with pytest.raises(DataValidationError, match="1 out-of-fold decision times"):
        find_reported_start(_times(1), 0.5)


def test_selection_rows_have_labels_known_before_the_reported_span_starts() -> None:
    decided = _times(20)
    known = decided + 4 * HOUR  # a 4-bar label
    start = find_reported_start(decided, 0.5)

    spans = label_spans(decided, known, start)

    assert (spans[(decided >= start).to_numpy()] == REPORTED).all()
    selected = spans == SELECTION
    assert (known[selected] <= start).all()
    assert (spans[(decided < start).to_numpy()] != REPORTED).all()
    # the three decisions whose labels end inside the reported span inform nothing
    assert list(spans[7:10]) == [PURGED] * 3
    assert selected.sum() == 7 and (spans == REPORTED).sum() == 10


def test_spans_round_trip_through_tags_and_refuse_an_empty_side() -> None:
    decided = _times(40)
    oof = pd.DataFrame({"decision_ts": decided})
    oof[SPAN_COLUMN] = label_spans(decided, decided + HOUR, find_reported_start(decided, 0.5))
    spans = EvaluationSpans.build(_times(10), _times(5), oof, "decision_ts")

    assert EvaluationSpans.from_tags(spans.tags()) == spans
    assert spans.reported_start == decided.iloc[20].isoformat()
    assert EvaluationSpans.from_tags({"sextant.span.train": "x"}) is None

    oof[SPAN_COLUMN] = np.where(True, SELECTION, SELECTION)
    with pytest.raises(DataValidationError, match="0 reported rows"):
        EvaluationSpans.build(_times(10), _times(5), oof, "decision_ts")
