"""Where sextant keeps its state: everything lives under one home directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["StatePaths"]


@dataclass(frozen=True, slots=True)
class StatePaths:
    """Paths of every store under ``home`` (see DESIGN.md "State on disk")."""

    home: Path

    @property
    def market_db(self) -> Path:
        return self.home / "market.duckdb"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def decisions_db(self) -> Path:
        """The decisions store (SQLite, WAL mode): shared by the service and its readers."""
        return self.home / "decisions.sqlite"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def prefect_dir(self) -> Path:
        return self.home / "prefect"

    def ensure(self) -> StatePaths:
        """Create the home and its directories (not the database files)."""
        for directory in (
            self.home,
            self.features_dir,
            self.feast_dir,
            self.mlflow_dir,
            self.reports_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        return self
