"""The explanations table of the decisions store: stored once, listed, looked up as a cache."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.explain.schema import Citation, Explanation, ExplanationRecord, Subject
from serving.decisions_store import SCHEMA_VERSION, DecisionsStore
from sextant.errors import ConfigError, DataValidationError, RecordConflictError
from sextant.paths import StatePaths

T0 = datetime(2024, 1, 10, 14, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return StatePaths(tmp_path / "home").decisions_db


@pytest.fixture
def store(db: Path) -> Iterator[DecisionsStore]:
    with DecisionsStore.open(db) as opened:
        yield opened


def explanation(
    ident: str,
    *,
    subject_id: str = "20240110T140000Z-5f1c2d3e4a5b6c7d",
    question: str = "why?",
    model: str = "gpt-test",
    minutes: int = 0,
    grounded: bool = True,
    subject: Subject = Subject.DECISION,
) -> dict[str, Any]:
    record = ExplanationRecord(
        id=ident,
        subject=subject,
        subject_id=subject_id,
        question=question,
        answer=Explanation(
            summary="BUY with confidence 0.72.",
            citations=[Citation(tool_call_id="call_1", field="confidence")],
        ),
        model=model,
        grounded=grounded,
        failed_claims=[] if grounded else ["summary: number 0.93 matches no value"],
        tool_calls=[{"id": "call_1", "tool": "get_decision", "args": {}, "output": {"c": 0.72}}],
        prompt_tokens=130,
        completion_tokens=50,
        latency_ms=12.5,
        trace_id="tr-1" if grounded else None,
        created_at=(T0 + timedelta(minutes=minutes)).isoformat(),
    )
    return record.model_dump(mode="json")


def test_an_explanation_round_trips_and_is_stored_once(store: DecisionsStore) -> None:
    record = explanation("e1")

    first = store.record_explanation(record)
    again = store.record_explanation(dict(record))

    assert (first, again) == (True, False)
    assert store.explanation("e1") == record
    assert ExplanationRecord.model_validate(store.explanation("e1")).answer.summary.startswith(
        "BUY"
    )
    assert store.explanation("nope") is None


def test_an_id_stored_with_other_content_is_refused_and_the_stored_one_stands(
    store: DecisionsStore,
) -> None:
    store.record_explanation(explanation("e1"))

    with pytest.raises(RecordConflictError, match="explanation e1"):
        store.record_explanation(explanation("e1", question="another question"))

    assert store.explanation("e1") == explanation("e1")


def test_explanations_are_listed_newest_first_with_filters(store: DecisionsStore) -> None:
    store.record_explanation(explanation("a", minutes=1))
    store.record_explanation(explanation("b", minutes=3, subject_id="other"))
    store.record_explanation(
        explanation("c", minutes=2, subject=Subject.MARKET, subject_id="BTC/USDT")
    )

    assert [r["id"] for r in store.explanations()] == ["b", "c", "a"]
    assert [r["id"] for r in store.explanations(n=1)] == ["b"]
    assert [r["id"] for r in store.explanations(subject="market")] == ["c"]
    assert [r["id"] for r in store.explanations(subject_id="other")] == ["b"]
    assert store.explanations(subject="decision", subject_id="BTC/USDT") == []
    with pytest.raises(DataValidationError, match="n must be"):
        store.explanations(n=-1)


def test_the_cache_key_is_subject_id_question_and_model(store: DecisionsStore) -> None:
    store.record_explanation(explanation("old", minutes=1))
    store.record_explanation(explanation("new", minutes=5))
    store.record_explanation(explanation("refused", minutes=9, grounded=False))
    store.record_explanation(explanation("offline", minutes=7, model="offline"))
    key = ("decision", "20240110T140000Z-5f1c2d3e4a5b6c7d")

    newest = store.cached_explanation(*key, "why?", "gpt-test")
    grounded = store.cached_explanation(*key, "why?", "gpt-test", grounded_only=True)

    assert newest is not None and newest["id"] == "refused"
    assert grounded is not None and grounded["id"] == "new"
    assert store.cached_explanation(*key, "why?", "offline")["id"] == "offline"  # type: ignore[index]
    assert store.cached_explanation(*key, "why not?", "gpt-test") is None
    assert store.cached_explanation(*key, "why?", "other-model") is None
    assert store.cached_explanation("anomaly", key[1], "why?", "gpt-test") is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": ""}, "id"),
        ({"grounded": "yes"}, "grounded"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"created_at": "2024-01-10T14:00:00"}, "created_at"),  # naive
        ({"answer": None, "model": None}, "model"),
    ],
)
def test_a_malformed_explanation_record_is_refused_and_nothing_is_stored(
    store: DecisionsStore, change: dict[str, Any], field: str
) -> None:
    record = {**explanation("bad"), **change}

    with pytest.raises(DataValidationError) as raised:
        store.record_explanation(record)

    assert raised.value.field == field
    assert store.explanations() == []


def test_a_record_lacking_fields_names_them(store: DecisionsStore) -> None:
    record = explanation("x")
    del record["answer"], record["model"]

    with pytest.raises(DataValidationError, match=r"lacks \['model', 'answer'\]"):
        store.record_explanation(record)


def test_a_read_only_store_refuses_to_record_explanations(db: Path) -> None:
    with DecisionsStore.open(db) as writer:
        writer.record_explanation(explanation("e1"))

    with DecisionsStore.open(db, readonly=True) as reader:
        assert reader.explanation("e1") == explanation("e1")
        with pytest.raises(ConfigError, match="read-only"):
            reader.record_explanation(explanation("e2"))


def make_schema_3(db: Path) -> None:
    with DecisionsStore.open(db):
        pass
    with closing(sqlite3.connect(db)) as raw:
        raw.execute("DROP TABLE explanations")
        raw.execute("UPDATE store_meta SET value = '3' WHERE key = 'schema_version'")
        raw.commit()


def test_a_schema_3_store_gains_explanations_on_a_read_write_open(db: Path) -> None:
    make_schema_3(db)

    with DecisionsStore.open(db) as reopened:
        assert reopened.explanations() == []
        reopened.record_explanation(explanation("e1"))
    with closing(sqlite3.connect(db)) as raw:
        version = raw.execute(
            "SELECT value FROM store_meta WHERE key = 'schema_version'"
        ).fetchall()

    assert version == [(str(SCHEMA_VERSION),)]


def test_a_read_only_reader_of_a_schema_3_store_sees_no_explanations(db: Path) -> None:
    make_schema_3(db)

    with DecisionsStore.open(db, readonly=True) as reader:
        assert reader.explanations() == []
        assert reader.explanation("e1") is None
        assert reader.cached_explanation("decision", "d", "why?", "m") is None
