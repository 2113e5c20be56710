"""Every indicator of sextant.ta as a test case: how to call it, and TA-Lib's counterpart if any."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import talib

from sextant import ta

Array = npt.NDArray[np.float64]
Bars = Mapping[str, Array]  # keys: open, high, low, close, volume
Outputs = tuple[Array, ...]


def _tuple(result: object) -> Outputs:
    return tuple(result) if isinstance(result, tuple) else (result,)  # type: ignore[return-value]


@dataclass(frozen=True)
class Case:
    """One indicator with one parameter set."""

    name: str
    params: dict[str, Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    talib: Callable[..., object] | None = field(default=None, repr=False)
    talib_params: tuple[Any, ...] = ()
    talib_outputs: tuple[int, ...] = (0,)

    @property
    def id(self) -> str:
        params = ",".join(f"{key}={value}" for key, value in self.params.items())
        return f"{self.name}({params})"

    def run(self, bars: Bars) -> Outputs:
        """Our outputs, in ``outputs`` order."""
        function = getattr(ta, self.name)
        return _tuple(function(*(bars[key] for key in self.inputs), **self.params))

    def run_talib(self, bars: Bars) -> Outputs:
        """TA-Lib's outputs matching ``outputs`` (several TA-Lib calls for ADX)."""
        assert self.talib is not None
        if self.name == "adx":
            h, lo, c = bars["high"], bars["low"], bars["close"]
            period = self.talib_params[0]
            return (
                talib.ADX(h, lo, c, period),
                talib.PLUS_DI(h, lo, c, period),
                talib.MINUS_DI(h, lo, c, period),
            )
        result = _tuple(self.talib(*(bars[key] for key in self.inputs), *self.talib_params))
        return tuple(result[i] for i in self.talib_outputs)

    def warmups(self) -> dict[str, int]:
        """The documented warm-up of each output."""
        return {out: ta.warmup(self.name, output=out, **self.params) for out in self.outputs}


C = ("close",)
HLC = ("high", "low", "close")
HLCV = ("high", "low", "close", "volume")
BANDS = ("upper", "middle", "lower", "percent_b", "bandwidth")
CHANNEL = ("upper", "middle", "lower")


def _single(
    name: str, inputs: tuple[str, ...], fn: Callable[..., object], *periods: int
) -> list[Case]:
    return [Case(name, {"period": p}, inputs, (name,), fn, (p,)) for p in periods]


def _talib_stoch(h: Array, lo: Array, c: Array, fastk: int, slowk: int, slowd: int) -> object:
    return talib.STOCH(h, lo, c, fastk_period=fastk, slowk_period=slowk, slowd_period=slowd)


def talib_cases() -> list[Case]:
    """Indicators TA-Lib has, with a few parameter sets each."""
    cases: list[Case] = []
    for name, fn in (
        ("sma", talib.SMA),
        ("ema", talib.EMA),
        ("wma", talib.WMA),
        ("dema", talib.DEMA),
        ("tema", talib.TEMA),
    ):
        cases += _single(name, C, fn, 2, 14, 50)
    cases += _single("rsi", C, talib.RSI, 2, 14, 30)
    cases += _single("roc", C, talib.ROC, 1, 10)
    cases += _single("atr", HLC, talib.ATR, 1, 14, 30)
    cases += _single("natr", HLC, talib.NATR, 2, 14)
    cases += _single("cci", HLC, talib.CCI, 2, 14, 20)
    cases += _single("willr", HLC, talib.WILLR, 2, 14)
    cases += _single("mfi", HLCV, talib.MFI, 2, 14)
    for period in (2, 14, 30):
        cases.append(
            Case(
                "adx", {"period": period}, HLC, ("adx", "plus_di", "minus_di"), talib.ADX, (period,)
            )
        )
    for fast, slow, signal in ((12, 26, 9), (5, 35, 5), (2, 3, 1)):
        cases.append(
            Case(
                "macd",
                {"fast": fast, "slow": slow, "signal": signal},
                C,
                ("macd", "signal", "hist"),
                talib.MACD,
                (fast, slow, signal),
                (0, 1, 2),
            )
        )
    for period, nbdev in ((20, 2.0), (5, 1.0), (50, 2.5)):
        cases.append(
            Case(
                "bbands",
                {"period": period, "nbdev": nbdev},
                C,
                BANDS,
                talib.BBANDS,
                (period, nbdev, nbdev),
                (0, 1, 2),
            )
        )
    for fastk, slowk, slowd in ((14, 3, 3), (5, 1, 1), (21, 5, 4)):
        cases.append(
            Case(
                "stoch",
                {"fastk": fastk, "slowk": slowk, "slowd": slowd},
                HLC,
                ("k", "d"),
                _talib_stoch,
                (fastk, slowk, slowd),
                (0, 1),
            )
        )
    for period, fastk, fastd in ((14, 5, 3), (14, 14, 3), (5, 3, 1)):
        cases.append(
            Case(
                "stochrsi",
                {"period": period, "fastk": fastk, "fastd": fastd},
                C,
                ("k", "d"),
                talib.STOCHRSI,
                (period, fastk, fastd),
                (0, 1),
            )
        )
    cases.append(Case("obv", {}, ("close", "volume"), ("obv",), talib.OBV))
    return cases


def own_cases() -> list[Case]:
    """Indicators TA-Lib lacks."""
    return [
        Case("rolling_vwap", {"period": 24}, HLCV, ("rolling_vwap",)),
        Case("rolling_vwap", {"period": 1}, HLCV, ("rolling_vwap",)),
        Case("keltner", {"period": 20, "multiplier": 2.0}, HLC, CHANNEL),
        Case("keltner", {"period": 3, "multiplier": 1.5}, HLC, CHANNEL),
        Case("donchian", {"period": 20}, ("high", "low"), CHANNEL),
        Case("donchian", {"period": 1}, ("high", "low"), CHANNEL),
        Case("parkinson_vol", {"period": 24}, ("high", "low"), ("parkinson_vol",)),
        Case(
            "garman_klass_vol",
            {"period": 24},
            ("open", "high", "low", "close"),
            ("garman_klass_vol",),
        ),
    ]


def all_cases() -> list[Case]:
    """Every indicator, TA-Lib's and ours."""
    return talib_cases() + own_cases()


def default_cases() -> list[Case]:
    """One case per indicator: the first parameter set of each."""
    seen: dict[str, Case] = {}
    for case in all_cases():
        seen.setdefault(case.name, case)
    return list(seen.values())
