"""The online input contract, reader's side: packed vectors back into what each consumer feeds.

One online read per symbol (`FeastStore.online_read`) returns every service's packed vector
(`features.vectors`); this module turns them into the decision engine's inputs without `arch` or
torch:

- the decision's TA features and the XGBoost features: the vector's latest (only) row;
- the LSTM's ONNX input ``sequence`` [N, seq_len, F]: the window's last ``seq_len`` rows
  (`sequence_input`);
- GARCH's one-step conditional variance: recomputed from the window of log returns with the
  registered ONNX recursion, one step per return (`garch_variance`; the decision engine evaluates
  the same recursion in one ONNX call, `serving.garch_window`), so it advances with every
  bar instead of being frozen at training time.

GARCH's tolerance: the recursion ``v' = omega + a(r) * (r - mu)**2 + beta * v`` is linear in the
variance, so starting it from a seed ``s`` instead of the full-history variance ``v0`` moves the
result by exactly ``beta**n * (s - v0)`` after ``n`` returns. The seed is the window's mean squared
return, so ``|s - v0|`` is of the order of the variance itself; with ``n`` close to
`GARCH_WINDOW` (336) and beta <= 0.95, the relative difference from the full-history filtered
variance is below 1e-6 (`GARCH_VARIANCE_TOLERANCE`) unless the variance moved by a factor of
about 30 within the window. Training checks it for the fitted parameters on the latest returns
before registering (`models.garch_family.garch_window_parity`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from features.definitions import VectorLayout
from sextant.errors import ConfigError, DataValidationError

__all__ = [
    "GARCH_VARIANCE_TOLERANCE",
    "VarianceStep",
    "garch_seed",
    "garch_variance",
    "sequence_input",
    "unpack_vectors",
]

FloatArray = npt.NDArray[np.float64]
# relative difference allowed between the variance recomputed from the window and the
# training-side variance filtered over the whole history (see the module docstring)
GARCH_VARIANCE_TOLERANCE = 1e-6

# (last_return [N, 1], last_variance [N, 1]) -> next_variance [N, 1], float64: one step of the
# GARCH recursion, e.g. the registered ONNX graph run with onnxruntime, symbol_index bound
VarianceStep = Callable[[FloatArray, FloatArray], npt.ArrayLike]


def unpack_vectors(values: npt.ArrayLike, layout: VectorLayout) -> FloatArray:
    """Packed vectors [N, window * features] as windows [N, window, features], oldest row first."""
    packed = np.asarray(values, dtype=np.float64)
    if packed.ndim != 2 or packed.shape[1] != layout.size:
        raise DataValidationError(
            f"packed vectors of shape {packed.shape} do not hold {layout.window} rows of "
            f"{len(layout.features)} features ({layout.size} values each)",
            field="vector",
        )
    return packed.reshape(len(packed), layout.window, len(layout.features))


def sequence_input(
    window: npt.ArrayLike,
    layout_features: Sequence[str],
    model_features: Sequence[str],
    seq_len: int,
) -> npt.NDArray[np.float32]:
    """The LSTM graph's ``sequence`` input, float32 [N, seq_len, F], from online windows.

    ``window`` is [N, rows, F] (`unpack_vectors`) with columns ``layout_features``; the model's
    recorded feature order and ``seq_len`` must fit it. NaN stays NaN: the graph scales it to 0,
    the padding the network was trained with (`models.lstm`).
    """
    rows = np.asarray(window, dtype=np.float64)
    if tuple(layout_features) != tuple(model_features):
        raise ConfigError(
            f"the online window holds features {list(layout_features)}, the model reads "
            f"{list(model_features)}; train on the service's current features or rebuild"
        )
    if rows.ndim != 3 or rows.shape[2] != len(model_features):
        raise DataValidationError(
            f"windows of shape {rows.shape} do not hold {len(model_features)} features",
            field="vector",
        )
    if not 1 <= seq_len <= rows.shape[1]:
        raise ConfigError(
            f"the model reads sequences of {seq_len} rows, the online window holds "
            f"{rows.shape[1]}; set features.definitions.LSTM_WINDOW >= seq_len and rebuild"
        )
    sequence: npt.NDArray[np.float32] = rows[:, rows.shape[1] - seq_len :, :].astype(np.float32)
    return sequence


def garch_seed(returns: npt.ArrayLike) -> FloatArray:
    """Where the recursion over each window starts: its mean squared return, [N, 1].

    NaN returns are left out; a window without any return gives NaN (no variance).
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise DataValidationError(
            f"return windows must be [symbols, window], got shape {r.shape}", field="returns"
        )
    present = ~np.isnan(r)
    if np.isinf(r[present]).any():
        raise DataValidationError("return windows hold infinite values", field="returns")
    counts = present.sum(axis=1)
    squares = np.where(present, r, 0.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        seed: FloatArray = (squares.sum(axis=1) / counts).reshape(-1, 1)  # NaN: no return
    return seed


def garch_variance(step: VarianceStep, returns: npt.ArrayLike) -> FloatArray:
    """Next-bar conditional variance per row from its window of returns, [N, W] oldest first.

    Runs the recursion over each row's returns, starting from their mean square; a NaN return
    (a symbol's first bar, the bar after a candle gap, rows before the symbol's history) is
    skipped, as training skips it (`models.data.symbol_returns` drops nulls). A row without any
    return gives NaN. One call of ``step`` per window column, all rows at once.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise DataValidationError(
            f"return windows must be [symbols, window], got shape {r.shape}", field="returns"
        )
    present = ~np.isnan(r)
    variance = garch_seed(r)
    for k in range(r.shape[1]):
        known = present[:, k : k + 1]
        if not known.any():
            continue
        stepped = np.asarray(
            step(np.where(known, r[:, k : k + 1], 0.0), variance), dtype=np.float64
        ).reshape(-1, 1)
        variance = np.where(known, stepped, variance)
    result: FloatArray = variance.reshape(-1)
    return result
