"""The SQLite change token: stable across reads, new after any other connection's commit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from features.change_token import ChangeToken, sqlite_uri_path


def _database(path: Path) -> None:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
        con.execute("INSERT INTO t VALUES (1)")
    con.close()


def test_reads_keep_the_token_and_a_commit_elsewhere_changes_it(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    _database(path)
    watch = ChangeToken(path)
    first = watch.token()
    assert first is not None

    reader = sqlite3.connect(path)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert watch.token() == first  # a read commits nothing

    writer = sqlite3.connect(path)
    writer.execute("INSERT INTO t VALUES (2)")
    assert watch.token() == first  # not committed yet
    writer.commit()
    second = watch.token()
    assert second is not None and second != first
    assert watch.token() == second  # and it stays until the next commit

    writer.execute("UPDATE t SET x = 3")
    writer.commit()
    assert watch.token() not in (first, second)
    reader.close()
    writer.close()
    watch.close()


def test_a_replaced_file_changes_the_token(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    _database(path)
    watch = ChangeToken(path)
    before = watch.token()
    replacement = tmp_path / "new.db"
    _database(replacement)
    replacement.replace(path)  # a new inode at the same path, no commit seen by the old one
    after = watch.token()
    assert after is not None and after != before
    watch.close()


def test_no_file_or_no_sqlite_has_no_token(tmp_path: Path) -> None:
    assert ChangeToken(tmp_path / "absent.db").token() is None
    assert ChangeToken(None).token() is None


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("sqlite:////home/x/mlflow/mlflow.db", Path("/home/x/mlflow/mlflow.db")),
        ("sqlite:///relative.db", Path("relative.db")),
        ("sqlite:///:memory:", None),
        ("postgresql://127.0.0.1/mlflow", None),
        ("http://127.0.0.1:5000", None),
    ],
)
def test_the_file_of_a_sqlite_uri(uri: str, path: Path | None) -> None:
    assert sqlite_uri_path(uri) == path
