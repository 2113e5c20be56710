"""The execution core shared by the backtest and paper trading: fills, fees, slippage, stops,
funding and the books, as one set of compiled kernels (``_kernels``) with thin wrappers."""

from __future__ import annotations

from sextant.execution._kernels import EXIT_REASONS, FILL_KINDS
from sextant.execution.config import ExecutionConfig
from sextant.execution.paper import BarReport, Candle, PaperBroker

__all__ = ["EXIT_REASONS", "FILL_KINDS", "BarReport", "Candle", "ExecutionConfig", "PaperBroker"]
