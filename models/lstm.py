"""LSTM direction family: a small recurrent network over each symbol's latest feature rows.

Input of a decision row i of symbol s: the feature rows of s at positions i-seq_len+1 .. i
(features only, never labels; a window never crosses into another symbol). Features are scaled
with per-feature mean/std of the training rows (NaN ignored, std floored at 1e-8), then NaN
becomes 0, i.e. the training mean. Rows before a symbol's first row are padding, 0 after scaling.

The scaler is part of the ONNX graph: serving feeds raw features ``sequence`` float32
[N, seq_len, F], NaN allowed, and gets ``p_up`` [N, 1]. ``onnx_inputs`` pads missing history
with NaN in raw space, which the graph maps to 0 after scaling, exactly the padding the network
was trained with. ``predict_proba`` takes the training path instead (rows scaled once, padding
as a row of zeros), so the parity check also tests that the two preprocessings agree.

Training: Adam on binary cross-entropy, early stopping on the log loss of the latest
``validation_fraction`` of the training timestamps (``models.direction_rows``), the best epoch's
weights kept. With a seed, torch's RNG (forked, so the caller's is untouched), the batch order
and deterministic algorithms make the same data and config give the same predictions.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper

from models.direction_rows import (
    check_features,
    check_index,
    check_training_rows,
    symbol_starts,
    validation_tail,
)
from models.protocol import DirectionDataset, IndexArray
from sextant.config import (
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SextantConfig,
    int_range,
    interval,
)
from sextant.contracts import FEATURE_SERVICES
from sextant.errors import ModelUnavailableError

if TYPE_CHECKING:
    import torch

__all__ = ["INPUT_SEQUENCE", "OUTPUT_P_UP", "LstmConfig", "LstmDirectionModel"]

INPUT_SEQUENCE = "sequence"
OUTPUT_P_UP = "p_up"
STD_FLOOR = 1e-8
_PREDICT_CHUNK = 4096  # rows per forward pass when predicting

Float32Array = npt.NDArray[np.float32]


class LstmConfig(SextantConfig):
    """Network size, optimisation, early stopping and the feature service the model reads."""

    seq_len: PositiveInt = 48  # rows (bars) per input sequence, the decision row last
    hidden: PositiveInt = 32
    layers: PositiveInt = 2
    # between LSTM layers (ignored with one layer)
    dropout: Annotated[float, interval(0.0, 1.0, hi_open=True)] = 0.1
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    batch_size: PositiveInt = 256
    max_epochs: PositiveInt = 30
    patience: PositiveInt = 5  # epochs without a better validation log loss before stopping
    grad_clip: PositiveFloat = 1.0  # max gradient norm
    # latest share of training timestamps watched for stopping
    validation_fraction: Annotated[float, interval(0.0, 0.5, lo_open=True, hi_open=True)] = 0.15
    seed: int = 42
    n_threads: PositiveInt = 2
    min_train_rows: Annotated[int, int_range(10)] = 500
    feature_service: str = FEATURE_SERVICES["lstm"]


@dataclass(frozen=True, slots=True, eq=False)
class _Fitted:
    network: torch.nn.Module  # scaled sequences -> logit [N, 1], eval mode
    mean: Float32Array  # [F], raw feature means of the training rows
    std: Float32Array  # [F], floored
    features: tuple[str, ...]
    best_epoch: int  # 0-based
    epochs_run: int
    best_validation_logloss: float
    n_fit_rows: int
    n_validation_rows: int


class LstmDirectionModel:
    """P(up) from an LSTM over the last ``seq_len`` feature rows (``DirectionModel`` protocol)."""

    family: str = "lstm"

    def __init__(self, config: LstmConfig | None = None) -> None:
        self.config = config or LstmConfig()
        self._fitted: _Fitted | None = None
        self._onnx: onnx.ModelProto | None = None

    def fit(self, data: DirectionDataset, train_idx: IndexArray) -> None:
        """Fit scaler and network on rows ``train_idx``, early-stopped on their latest timestamps."""
        import torch

        cfg = self.config
        check_features(self.family, data, cfg.feature_service)
        rows = check_index(self.family, data, train_idx)
        check_training_rows(self.family, data, rows, min_rows=cfg.min_train_rows)
        fit_idx, val_idx = validation_tail(self.family, data, rows, cfg.validation_fraction)
        starts = symbol_starts(self.family, data)
        mean, std = _fit_scaler(data.X[rows])
        table = torch.from_numpy(_scaled_table(data.X, mean, std))
        fit_pos = torch.from_numpy(_padded_positions(starts, fit_idx, cfg.seq_len, pad=len(data.y)))
        val_pos = torch.from_numpy(_padded_positions(starts, val_idx, cfg.seq_len, pad=len(data.y)))
        fit_y = torch.from_numpy(data.y[fit_idx].astype(np.float32))
        val_y = torch.from_numpy(data.y[val_idx].astype(np.float32))

        with _torch_determinism(cfg.n_threads, cfg.seed):
            network = _make_network(len(data.features), cfg)
            optimizer = torch.optim.Adam(
                network.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
            )
            loss_fn = torch.nn.BCEWithLogitsLoss()
            order = np.random.default_rng(cfg.seed)
            best_loss, best_epoch, best_state = math.inf, -1, copy.deepcopy(network.state_dict())
            epoch = 0
            for epoch in range(cfg.max_epochs):
                network.train()
                permutation = torch.from_numpy(order.permutation(len(fit_idx)))
                for batch in torch.split(permutation, cfg.batch_size):
                    optimizer.zero_grad()
                    logits = network(table[fit_pos[batch]]).squeeze(1)
                    loss_fn(logits, fit_y[batch]).backward()
                    torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip)
                    optimizer.step()
                val_loss = _log_loss(network, table, val_pos, val_y)
                if val_loss < best_loss:
                    best_loss, best_epoch = val_loss, epoch
                    best_state = copy.deepcopy(network.state_dict())
                elif epoch - best_epoch >= cfg.patience:
                    break
            if best_epoch < 0:
                raise ModelUnavailableError(
                    f"lstm: validation log loss was never finite over {epoch + 1} epochs "
                    f"(lr={cfg.lr}); the network diverged"
                )
            network.load_state_dict(best_state)
            network.eval()
        self._onnx = None
        self._fitted = _Fitted(
            network=network,
            mean=mean,
            std=std,
            features=data.features,
            best_epoch=best_epoch,
            epochs_run=epoch + 1,
            best_validation_logloss=best_loss,
            n_fit_rows=len(fit_idx),
            n_validation_rows=len(val_idx),
        )

    def predict_proba(self, data: DirectionDataset, idx: IndexArray) -> npt.NDArray[np.float64]:
        """P(up) for rows ``idx``: windows of scaled rows, missing history as zero rows."""
        import torch

        fitted = self._require_fitted()
        check_features(self.family, data, self.config.feature_service)
        rows = check_index(self.family, data, idx)
        starts = symbol_starts(self.family, data)
        table = torch.from_numpy(_scaled_table(data.X, fitted.mean, fitted.std))
        out = np.empty(len(rows), dtype=np.float64)
        with _torch_determinism(self.config.n_threads, self.config.seed), torch.no_grad():
            for lo in range(0, len(rows), _PREDICT_CHUNK):
                chunk = rows[lo : lo + _PREDICT_CHUNK]
                pos = torch.from_numpy(
                    _padded_positions(starts, chunk, self.config.seq_len, pad=len(data.y))
                )
                out[lo : lo + len(chunk)] = (
                    torch.sigmoid(fitted.network(table[pos])).squeeze(1).numpy()
                )
        return out

    def to_onnx(self) -> onnx.ModelProto:
        """Scaler + network as one self-contained graph: ``sequence`` [N, seq_len, F] -> ``p_up`` [N, 1]."""
        fitted = self._require_fitted()
        if self._onnx is None:  # exporting costs seconds: once per fit
            self._onnx = self._export(fitted)
        model = onnx.ModelProto()
        model.CopyFrom(self._onnx)
        return model

    def onnx_inputs(self, data: DirectionDataset, idx: IndexArray) -> dict[str, Float32Array]:
        """``{"sequence": float32 [len(idx), seq_len, F]}`` of raw features, missing history as NaN."""
        self._require_fitted()
        check_features(self.family, data, self.config.feature_service)
        rows = check_index(self.family, data, idx)
        starts = symbol_starts(self.family, data)
        pos = _padded_positions(starts, rows, self.config.seq_len, pad=-1)
        sequence = data.X[np.maximum(pos, 0)].astype(np.float32)
        sequence[pos < 0] = np.nan
        return {INPUT_SEQUENCE: sequence}

    def params(self) -> dict[str, Any]:
        """Config, and once fitted: epochs run, best epoch and validation log loss, row counts."""
        out: dict[str, Any] = {"family": self.family, **self.config.as_dict()}
        if self._fitted is None:
            return out
        fitted = self._fitted
        out.update(
            best_epoch=fitted.best_epoch,
            epochs_run=fitted.epochs_run,
            best_validation_logloss=fitted.best_validation_logloss,
            n_fit_rows=fitted.n_fit_rows,
            n_validation_rows=fitted.n_validation_rows,
            n_parameters=sum(int(p.numel()) for p in fitted.network.parameters()),
        )
        return out

    def _export(self, fitted: _Fitted) -> onnx.ModelProto:
        import torch

        cfg = self.config
        wrapper = _make_exportable(copy.deepcopy(fitted.network), fitted.mean, fitted.std).eval()
        example = torch.zeros(2, cfg.seq_len, len(fitted.features))
        registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
        previous_level = registration_log.level
        registration_log.setLevel(logging.ERROR)  # "torchvision is not installed" notices
        try:
            with warnings.catch_warnings(), _torch_determinism(cfg.n_threads, cfg.seed):
                # torch 2.13's exporter warns about its own internals while tracing nn.LSTM
                # (_check_is_size and LeafSpec deprecations, _flat_weights re-assigned, .grad of
                # non-leaf tensors read by dynamo); none is actionable here, and parity checks
                # the exported graph itself
                for category in (UserWarning, FutureWarning, DeprecationWarning):
                    warnings.simplefilter("ignore", category)
                program = torch.onnx.export(
                    wrapper,
                    (example,),
                    input_names=[INPUT_SEQUENCE],
                    output_names=[OUTPUT_P_UP],
                    dynamic_shapes=({0: torch.export.Dim("N")},),
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )
        finally:
            registration_log.setLevel(previous_level)
        if program is None:
            raise ModelUnavailableError("lstm: torch.onnx.export returned no program")
        model = program.model_proto
        external = [
            t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
        ]
        if external:
            raise ModelUnavailableError(
                f"lstm: ONNX export left initializers outside the model: {external}"
            )
        helper.set_model_props(
            model,
            {
                "family": self.family,
                "feature_service": cfg.feature_service,
                "features": json.dumps(list(fitted.features)),
                "seq_len": str(cfg.seq_len),
                "padding": "rows before a symbol's first row are NaN (scaled to 0 inside the graph)",
            },
        )
        onnx.checker.check_model(model, full_check=True)
        return model

    def _require_fitted(self) -> _Fitted:
        if self._fitted is None:
            raise ModelUnavailableError(
                "lstm: the model is not fitted; call fit() before predicting or exporting"
            )
        return self._fitted


def _fit_scaler(features: Float32Array) -> tuple[Float32Array, Float32Array]:
    """Per-feature mean and population std over non-NaN values; all-NaN columns get (0, 1)."""
    values = features.astype(np.float64)
    present = ~np.isnan(values)
    count = present.sum(axis=0)
    filled = np.where(present, values, 0.0)
    mean = filled.sum(axis=0) / np.maximum(count, 1)
    variance = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1)
    std = np.where(count > 0, np.maximum(np.sqrt(variance), STD_FLOOR), 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _scaled_table(features: Float32Array, mean: Float32Array, std: Float32Array) -> Float32Array:
    """(features - mean) / std in float32, NaN -> 0, plus a final all-zero row used as padding."""
    scaled = (features - mean) / std  # float32 throughout, the graph's arithmetic
    table = np.zeros((len(features) + 1, features.shape[1]), dtype=np.float32)
    table[:-1] = np.where(np.isnan(scaled), np.float32(0.0), scaled)
    return table


def _padded_positions(
    starts: IndexArray, rows: IndexArray, seq_len: int, *, pad: int
) -> npt.NDArray[np.int64]:
    """[len(rows), seq_len] row positions of each window, oldest first; ``pad`` before a symbol starts."""
    positions = rows[:, None].astype(np.int64) + np.arange(1 - seq_len, 1, dtype=np.int64)
    out: npt.NDArray[np.int64] = np.where(positions >= starts[rows][:, None], positions, pad)
    return out


def _log_loss(
    network: torch.nn.Module, table: torch.Tensor, positions: torch.Tensor, labels: torch.Tensor
) -> float:
    import torch

    network.eval()
    with torch.no_grad():
        logits = torch.cat(
            [network(table[chunk]).squeeze(1) for chunk in torch.split(positions, _PREDICT_CHUNK)]
        )
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits.double(), labels.double()
        )
    return float(loss)


@contextmanager
def _torch_determinism(n_threads: int, seed: int) -> Iterator[None]:
    """Fixed threads, deterministic kernels and a seeded, forked RNG; the caller's state is restored."""
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(n_threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)


def _make_network(n_features: int, config: LstmConfig) -> torch.nn.Module:
    """LSTM over scaled sequences and a linear head on the last step: logits [N, 1]."""
    import torch

    class DirectionLstm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(
                n_features,
                config.hidden,
                config.layers,
                batch_first=True,
                dropout=config.dropout if config.layers > 1 else 0.0,
            )
            self.head = torch.nn.Linear(config.hidden, 1)

        def forward(self, scaled: torch.Tensor) -> torch.Tensor:
            steps, _ = self.lstm(scaled)
            logits: torch.Tensor = self.head(steps[:, -1, :])
            return logits

    return DirectionLstm()


def _make_exportable(
    network: torch.nn.Module, mean: Float32Array, std: Float32Array
) -> torch.nn.Module:
    """Raw sequences (NaN allowed) -> scale -> NaN to 0 -> network -> sigmoid: p_up [N, 1]."""
    import torch

    class ScaledDirectionLstm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network
            self.mean: torch.Tensor
            self.std: torch.Tensor
            self.register_buffer("mean", torch.from_numpy(mean.copy()))
            self.register_buffer("std", torch.from_numpy(std.copy()))

        def forward(self, sequence: torch.Tensor) -> torch.Tensor:
            scaled = (sequence - self.mean) / self.std
            scaled = torch.where(torch.isnan(scaled), torch.zeros_like(scaled), scaled)
            p_up: torch.Tensor = torch.sigmoid(self.network(scaled))
            return p_up

    return ScaledDirectionLstm()
