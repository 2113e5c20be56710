"""The `sextant ingest` / `sextant data` commands, run as a user runs them (console script)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from features.ingest.store import MarketStore

SEXTANT = [sys.executable, "-m", "sextant.cli"]


def sextant(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEXTANT_HOME": str(home)}
    proc = subprocess.run([*SEXTANT, *args], env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"sextant {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def test_file_ingest_twice_stores_every_row_once(tmp_path: Path, shared_data: Path) -> None:
    path = shared_data / "roshan7869_algotrading/binance/SOL_USDT-1h.feather"
    home = tmp_path / "home"

    first = json.loads(
        sextant(
            home,
            "ingest",
            "--source",
            "file",
            "--path",
            str(path),
            "--symbol",
            "SOL/USDT",
            "--json",
        ).stdout
    )
    second = json.loads(
        sextant(
            home,
            "ingest",
            "--source",
            "file",
            "--path",
            str(path),
            "--symbol",
            "SOL/USDT",
            "--json",
        ).stdout
    )

    (r1,) = first["results"]
    (r2,) = second["results"]
    assert set(r1) >= {
        "source",
        "symbol",
        "timeframe",
        "rows_added",
        "rows_quarantined",
        "gaps",
        "first_ts",
        "last_ts",
    }
    assert (r1["symbol"], r1["timeframe"], r1["rows_added"], r1["rows_quarantined"]) == (
        "SOL/USDT",
        "1h",
        50_489,
        0,
    )
    assert (r1["first_ts"], r1["last_ts"]) == (
        "2020-08-11T06:00:00+00:00",
        "2026-05-16T18:00:00+00:00",
    )
    assert r2["rows_added"] == 0
    assert r1["gaps"] > 0 and r2["gaps"] == r1["gaps"]
    status = json.loads(sextant(home, "data", "status", "--json").stdout)["coverage"]
    assert [(c["symbol"], c["rows"], c["gaps"]) for c in status] == [
        ("SOL/USDT", 50_489, r1["gaps"])
    ]


def test_corrupt_file_is_a_clear_error_and_the_store_is_untouched(
    tmp_path: Path, shared_data: Path
) -> None:
    home = tmp_path / "home"
    good = shared_data / "daisybum_cryptotradingbot/binance/ETH_USDT-1h.feather"
    sextant(home, "ingest", "--source", "file", "--path", str(good), "--json")
    db = home / "market.duckdb"
    with MarketStore(db, read_only=True) as store:
        before = store.table_snapshot()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    truncated = tmp_path / "ETH_USDT-1h.feather"
    truncated.write_bytes(good.read_bytes()[:5_000])

    proc = sextant(
        home, "ingest", "--source", "file", "--path", str(truncated), "--json", check=False
    )

    assert proc.returncode == 2
    assert "DataValidationError" in proc.stderr and str(truncated) in proc.stderr
    assert proc.stdout == ""
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    with MarketStore(db, read_only=True) as store:
        assert store.table_snapshot() == before


def test_csv_with_bad_rows_stores_the_good_ones_and_quarantines_the_rest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    csv = tmp_path / "prices.csv"
    csv.write_text(
        "date,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,10,11,9,10.5,1\n"
        "2024-01-01T01:00:00Z,10.5,12,10,,2\n"  # NaN close
        "2024-01-01T02:00:00Z,-1,12,10,11,2\n"  # negative open
        "2024-01-01T03:00:00Z,11,12,10,11.5,3\n"
        "2024-01-01T03:00:00Z,11,12,10,11.5,3\n",  # exact duplicate
        encoding="utf-8",
    )

    out = json.loads(
        sextant(
            home,
            "ingest",
            "--source",
            "file",
            "--path",
            str(csv),
            "--symbol",
            "BTC/USDT",
            "--timeframe",
            "1h",
            "--json",
        ).stdout
    )

    (result,) = out["results"]
    assert (result["rows_added"], result["rows_quarantined"], result["exact_duplicates"]) == (
        2,
        2,
        1,
    )
    assert (result["gaps"], result["missing_bars"]) == (1, 2)
    with MarketStore(home / "market.duckdb", read_only=True) as store:
        reasons = sorted(store.query("SELECT reason FROM quarantine")["reason"])
    assert reasons == ["MISSING_VALUE", "NON_POSITIVE_PRICE"]


def test_candle_file_without_symbol_asks_for_it(tmp_path: Path) -> None:
    csv = tmp_path / "prices.csv"
    csv.write_text(
        "date,open,high,low,close,volume\n2024-01-01T00:00:00Z,10,11,9,10.5,1\n", encoding="utf-8"
    )
    proc = sextant(tmp_path / "home", "ingest", "--source", "file", "--path", str(csv), check=False)
    assert proc.returncode == 2
    assert "--symbol" in proc.stderr


def test_bad_setting_is_a_config_error(tmp_path: Path) -> None:
    env = {**os.environ, "SEXTANT_HOME": str(tmp_path), "SEXTANT_TIMEFRAME": "7x"}
    proc = subprocess.run(
        [*SEXTANT, "data", "status"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "ConfigError" in proc.stderr and "SEXTANT_TIMEFRAME" in proc.stderr


def test_help_lists_the_commands() -> None:
    proc = subprocess.run([*SEXTANT, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("ingest", "data", "run"):
        assert command in proc.stdout


@pytest.mark.parametrize("args", [["data", "status"], ["data", "status", "--json"]])
def test_status_before_any_ingest_explains_what_to_do(tmp_path: Path, args: list[str]) -> None:
    proc = sextant(tmp_path / "home", *args, check=False)
    assert proc.returncode == 2
    assert "sextant ingest" in proc.stderr
