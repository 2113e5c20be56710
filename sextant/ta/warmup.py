"""Warm-up lengths: how many leading bars of each indicator are NaN on clean data.

They equal TA-Lib's lookback wherever TA-Lib has the indicator. Defaults come from the
indicator's own signature, so ``warmup("rsi")`` is the warm-up of ``rsi(close)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

from sextant.ta._inputs import positive_number, window
from sextant.ta.channels import bbands, donchian, keltner
from sextant.ta.momentum import cci, roc, rsi, stoch, stochrsi, willr
from sextant.ta.moving_averages import dema, ema, sma, tema, wma
from sextant.ta.results import Adx, Bands, Channel, Macd, Stoch
from sextant.ta.trend import adx, macd, macd_periods
from sextant.ta.volatility import atr, garman_klass_vol, natr, parkinson_vol
from sextant.ta.volume import mfi, obv, rolling_vwap

__all__ = ["INDICATORS", "warmup"]

_FUNCTIONS: dict[str, Callable[..., object]] = {
    function.__name__: function
    for function in (
        sma,
        ema,
        wma,
        dema,
        tema,
        rsi,
        macd,
        bbands,
        atr,
        natr,
        adx,
        stoch,
        stochrsi,
        cci,
        willr,
        roc,
        mfi,
        obv,
        rolling_vwap,
        keltner,
        donchian,
        parkinson_vol,
        garman_klass_vol,
    )
}
_SERIES_ARGUMENTS = frozenset({"x", "open_", "high", "low", "close", "volume"})

INDICATORS: tuple[str, ...] = tuple(_FUNCTIONS)


def warmup(name: str, /, *, output: str | None = None, **params: object) -> int:
    """Leading NaN bars of ``name`` on clean data: the max over its outputs, or ``output``'s own."""
    if name not in _FUNCTIONS:
        raise ValueError(f"warmup: unknown indicator {name!r}; known: {', '.join(INDICATORS)}")
    options = {
        parameter.name: parameter.default
        for parameter in inspect.signature(_FUNCTIONS[name]).parameters.values()
        if parameter.name not in _SERIES_ARGUMENTS
    }
    unknown = sorted(set(params) - set(options))
    if unknown:
        takes = ", ".join(options) or "no parameters"
        raise ValueError(f"warmup: {name} has no parameter {', '.join(unknown)} (it takes {takes})")
    options.update(params)
    missing = [key for key, value in options.items() if value is inspect.Parameter.empty]
    if missing:
        raise ValueError(f"warmup: {name} needs {', '.join(missing)}")
    lags = _lags(name, options)
    if output is None:
        return max(lags.values())
    if output not in lags:
        raise ValueError(f"warmup: {name} has no output {output!r}; outputs: {', '.join(lags)}")
    return lags[output]


def _lags(name: str, params: Mapping[str, object]) -> dict[str, int]:
    """The warm-up of each output of ``name``, checking ``params`` as the indicator does."""

    def period(key: str = "period") -> int:
        return window(name, key, params[key])

    for key in ("nbdev", "multiplier"):
        if key in params:
            positive_number(name, key, params[key])
    match name:
        case "sma" | "ema" | "wma" | "cci" | "willr" | "rolling_vwap":
            return {name: period() - 1}
        case "parkinson_vol" | "garman_klass_vol":
            return {name: period() - 1}
        case "dema":
            return {name: 2 * (period() - 1)}
        case "tema":
            return {name: 3 * (period() - 1)}
        case "rsi" | "roc" | "atr" | "natr" | "mfi":
            return {name: period()}
        case "obv":
            return {name: 0}
        case "macd":
            _, slow, signal = macd_periods(params["fast"], params["slow"], params["signal"])
            return dict.fromkeys(Macd._fields, (slow - 1) + (signal - 1))
        case "bbands":
            return dict.fromkeys(Bands._fields, period() - 1)
        case "adx":
            p = period()
            return {Adx._fields[0]: 2 * p - 1, Adx._fields[1]: p, Adx._fields[2]: p}
        case "stoch":
            lag = (period("fastk") - 1) + (period("slowk") - 1) + (period("slowd") - 1)
            return dict.fromkeys(Stoch._fields, lag)
        case "stochrsi":
            lag = period() + (period("fastk") - 1) + (period("fastd") - 1)
            return dict.fromkeys(Stoch._fields, lag)
        case "keltner":
            return dict.fromkeys(Channel._fields, period())
        case "donchian":
            return dict.fromkeys(Channel._fields, period() - 1)
    raise AssertionError(f"warmup: no rule for {name}")  # INDICATORS and the match agree
