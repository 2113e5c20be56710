"""The decision logic, written once as numba kernels over floats and small float64 arrays.

The live wrappers (``signals``, ``fuser``, ``sizing``, ``risk``, ``engine.decide``) and the
backtest loop call these very functions; there is no second copy of the logic. Configs are
packed into flat float64 arrays (``FuserConfig.to_array()`` and friends) whose index constants
are declared below, and each component kernel writes its results into one decision output
vector (``O_*``) and one check table (``CK_*``), so a wrapper reads one component's slots and
the backtest records the ones it needs. numba reads the module-level integers as compile-time
constants.

Conventions: positions and targets are signed fractions of equity (+ long, - short); a NaN
input means "unknown" and never adds risk; no kernel raises (risk rejections are results).

The layout constants live in this file on purpose: numba's cache only notices edits to a
kernel's own file, so constants kept elsewhere could leave stale compiled kernels behind. The
backtest loop (another file) keys its cache on this file's content for the same reason.
"""

from __future__ import annotations

import math

from sextant.ta._jit import FloatArray, kernel

__all__ = [
    "ACTION_BUY",
    "ACTION_CLOSE",
    "ACTION_HOLD",
    "ACTION_NAMES",
    "ACTION_REDUCE",
    "ACTION_SELL",
    "CAP_KELLY",
    "CAP_LEVERAGE",
    "CAP_VOL_TARGET",
    "CHECK_CODES",
    "CK_CIRCUIT_BREAKER",
    "CK_DAILY_LOSS",
    "CK_GROSS",
    "CK_KILL",
    "CK_LIMIT",
    "CK_LOW_CONFIDENCE",
    "CK_MAX_DRAWDOWN",
    "CK_MODEL",
    "CK_OBSERVED",
    "CK_ORDER_RATE",
    "CK_PASSED",
    "CK_POSITION",
    "CK_STALE",
    "CK_STATE",
    "CK_VAR",
    "FEATURES_USED",
    "FU_ADX_MIN",
    "FU_ALLOW_TA_ONLY",
    "FU_ENTRY",
    "FU_EXIT",
    "FU_GATE_TA_MIN",
    "FU_MODE",
    "FU_RSI_HIGH",
    "FU_RSI_LOW",
    "FU_SIZE",
    "FU_W_LSTM",
    "FU_W_ML",
    "FU_W_TA",
    "FU_W_VOTES",
    "FU_W_XGB",
    "F_ADX",
    "F_BB_PERCENT_B",
    "F_DONCHIAN_BREAKOUT",
    "F_EMA_CROSS",
    "F_MACD_HIST",
    "F_NATR",
    "F_RSI",
    "HALT_BREAKER",
    "HALT_DAILY_LOSS",
    "HALT_DRAWDOWN",
    "MODE_AGREEMENT",
    "MODE_ML_GATED",
    "MODE_NAMES",
    "MODE_WEIGHTED",
    "N_CHECKS",
    "N_CHECK_FIELDS",
    "N_FEATURES",
    "N_OUT",
    "N_VOTES",
    "OUTPUT_NAMES",
    "O_ACTION",
    "O_APPROVED",
    "O_CONFIDENCE",
    "O_CURRENT",
    "O_DIRECTION",
    "O_FUSED_SCORE",
    "O_KELLY_CAP",
    "O_KELLY_RAW",
    "O_KELLY_RISK",
    "O_MISSING",
    "O_ML_AVAILABLE",
    "O_ML_PROB",
    "O_ML_SCORE",
    "O_ML_W_LSTM",
    "O_ML_W_XGB",
    "O_PROB",
    "O_PROPOSED",
    "O_SIZE_BINDING",
    "O_SIZE_FRACTION",
    "O_STATE",
    "O_STOP_DIST",
    "O_TA_SCORE",
    "O_TP_DIST",
    "O_VOL_FRACTION",
    "O_VOTES",
    "RK_DAILY_LOSS",
    "RK_GROSS",
    "RK_HARD_DD",
    "RK_KILL",
    "RK_MAX_AGE",
    "RK_MAX_ERRORS",
    "RK_MAX_ORDERS",
    "RK_MIN_CONFIDENCE",
    "RK_MIN_MODELS",
    "RK_POSITION",
    "RK_RESET_DAYS",
    "RK_SIZE",
    "RK_SOFT_DD",
    "RK_VAR",
    "RS_DAY",
    "RS_DAY_START",
    "RS_ERRORS",
    "RS_HALT_DAY",
    "RS_HALT_MASK",
    "RS_KILL",
    "RS_ORDERS",
    "RS_PEAK",
    "RS_SIZE",
    "RS_STATE",
    "SIZE_CAPS",
    "SIZING_FIELDS",
    "STATE_ACTIVE",
    "STATE_HALTED",
    "STATE_NAMES",
    "STATE_REDUCING",
    "SZ_BARS_PER_YEAR",
    "SZ_KELLY_FRACTION",
    "SZ_KELLY_PAYOFF",
    "SZ_MAX_LEVERAGE",
    "SZ_SIZE",
    "SZ_STOP_ATR",
    "SZ_TARGET_VOL",
    "SZ_TP_ATR",
    "VOTE_NAMES",
    "action_code",
    "decide_kernel",
    "fuse_kernel",
    "gate_kernel",
    "kelly_probability",
    "ml_signal_kernel",
    "propose_target",
    "reduce_only",
    "sign",
    "size_kernel",
    "ta_signal_kernel",
    "update_state_kernel",
]

# --- feature vector: the features the decision reads, in this order -----------------------------
F_RSI = 0
F_MACD_HIST = 1
F_BB_PERCENT_B = 2
F_ADX = 3
F_EMA_CROSS = 4
F_DONCHIAN_BREAKOUT = 5
F_NATR = 6
N_FEATURES = 7
FEATURES_USED: tuple[str, ...] = (
    "rsi_14",
    "macd_hist_pct",
    "bb_percent_b_20",
    "adx_14",
    "ema_cross_12_26",
    "donchian_breakout_20",
    "natr_14",
)

# --- TA votes -------------------------------------------------------------------------------------
N_VOTES = 5
VOTE_NAMES: tuple[str, ...] = (
    "trend",
    "momentum_rsi",
    "momentum_macd",
    "mean_reversion",
    "breakout",
)

# --- fuser modes ----------------------------------------------------------------------------------
MODE_WEIGHTED = 0
MODE_AGREEMENT = 1
MODE_ML_GATED = 2
MODE_NAMES: tuple[str, ...] = ("weighted", "agreement", "ml_gated")

# --- FuserConfig array ------------------------------------------------------------------------------
FU_W_VOTES = 0  # N_VOTES weights, VOTE_NAMES order
FU_ADX_MIN = 5
FU_RSI_HIGH = 6
FU_RSI_LOW = 7
FU_W_XGB = 8
FU_W_LSTM = 9
FU_W_TA = 10
FU_W_ML = 11
FU_MODE = 12
FU_ENTRY = 13
FU_EXIT = 14
FU_ALLOW_TA_ONLY = 15
FU_GATE_TA_MIN = 16
FU_SIZE = 17

# --- SizingConfig array: its fields, in this order ---------------------------------------------------
SIZING_FIELDS: tuple[str, ...] = (
    "target_annual_vol",
    "bars_per_year",
    "kelly_fraction",
    "kelly_payoff_ratio",
    "stop_atr",
    "take_profit_atr",
    "max_leverage",
)
SZ_TARGET_VOL = SIZING_FIELDS.index("target_annual_vol")
SZ_BARS_PER_YEAR = SIZING_FIELDS.index("bars_per_year")
SZ_KELLY_FRACTION = SIZING_FIELDS.index("kelly_fraction")
SZ_KELLY_PAYOFF = SIZING_FIELDS.index("kelly_payoff_ratio")
SZ_STOP_ATR = SIZING_FIELDS.index("stop_atr")
SZ_TP_ATR = SIZING_FIELDS.index("take_profit_atr")
SZ_MAX_LEVERAGE = SIZING_FIELDS.index("max_leverage")
SZ_SIZE = len(SIZING_FIELDS)

# --- the caps of an entry's size; O_SIZE_BINDING holds the code of the one that set it ------------
SIZE_CAPS: tuple[str, ...] = ("vol_target", "kelly", "leverage")  # a tie goes to the earlier
CAP_VOL_TARGET = SIZE_CAPS.index("vol_target")
CAP_KELLY = SIZE_CAPS.index("kelly")
CAP_LEVERAGE = SIZE_CAPS.index("leverage")

# --- RiskConfig array ---------------------------------------------------------------------------------
RK_KILL = 0
RK_MAX_AGE = 1
RK_MIN_MODELS = 2
RK_MIN_CONFIDENCE = 3
RK_POSITION = 4
RK_GROSS = 5
RK_DAILY_LOSS = 6
RK_SOFT_DD = 7
RK_HARD_DD = 8
RK_VAR = 9
RK_MAX_ERRORS = 10
RK_MAX_ORDERS = 11
RK_RESET_DAYS = 12
RK_SIZE = 13

# --- risk state array (kept by RiskGate between calls, and by the backtest loop) -------------------
RS_STATE = 0  # STATE_* code
RS_HALT_MASK = 1  # HALT_* bits that hold the state at HALTED
RS_PEAK = 2  # peak equity (NaN until the first evaluation)
RS_DAY_START = 3  # equity at the first evaluation of the current UTC day
RS_DAY = 4  # current UTC day number (days since 1970-01-01; -1 before the first evaluation)
RS_ORDERS = 5  # orders approved during the current UTC day
RS_ERRORS = 6  # consecutive model errors
RS_HALT_DAY = 7  # day the current REDUCING/sticky-halt episode began (-1: none)
RS_KILL = 8  # kill switch engaged (1) or not (0)
RS_SIZE = 9

STATE_ACTIVE = 0
STATE_REDUCING = 1
STATE_HALTED = 2
STATE_NAMES: tuple[str, ...] = ("ACTIVE", "REDUCING", "HALTED")

HALT_DAILY_LOSS = 1  # released at the next UTC day
HALT_DRAWDOWN = 2  # sticky: reset() or RiskConfig.halt_reset_days
HALT_BREAKER = 4  # sticky: reset() or RiskConfig.halt_reset_days

# --- risk checks, in the fixed order of the check table --------------------------------------------
CK_KILL = 0
CK_STATE = 1
CK_STALE = 2
CK_MODEL = 3
CK_LOW_CONFIDENCE = 4
CK_POSITION = 5
CK_GROSS = 6
CK_DAILY_LOSS = 7
CK_MAX_DRAWDOWN = 8
CK_VAR = 9
CK_CIRCUIT_BREAKER = 10
CK_ORDER_RATE = 11
N_CHECKS = 12
CHECK_CODES: tuple[str, ...] = (
    "KILL_SWITCH",
    "TRADING_STATE",
    "STALE_FEATURES",
    "MODEL_UNAVAILABLE",
    "LOW_CONFIDENCE",
    "MAX_POSITION",
    "MAX_GROSS_EXPOSURE",
    "DAILY_LOSS_LIMIT",
    "MAX_DRAWDOWN",
    "VAR_LIMIT",
    "CIRCUIT_BREAKER",
    "ORDER_RATE",
)
# columns of the check table
CK_PASSED = 0
CK_OBSERVED = 1
CK_LIMIT = 2
N_CHECK_FIELDS = 3

# --- actions --------------------------------------------------------------------------------------
ACTION_HOLD = 0
ACTION_BUY = 1
ACTION_SELL = 2
ACTION_CLOSE = 3
ACTION_REDUCE = 4
ACTION_NAMES: tuple[str, ...] = ("HOLD", "BUY", "SELL", "CLOSE", "REDUCE")

# --- decision output vector: one slot per name, in this order -------------------------------------
OUTPUT_NAMES: tuple[str, ...] = (
    *(f"vote_{name}" for name in VOTE_NAMES),  # votes in [-1, 1]
    *(f"missing_{name}" for name in VOTE_NAMES),  # 1 where the vote's feature was NaN
    "ta_score",
    "ml_score",  # NaN when no ML family is available
    "ml_prob",  # weighted probability of "up" over the available families
    "ml_available",  # number of available ML families (with a positive weight)
    "ml_w_xgb",  # effective (renormalized) weights
    "ml_w_lstm",
    "fused_score",
    "direction",
    "confidence",
    "prob",  # P(horizon return > 0) in the trade's direction, as Kelly uses it
    "vol_fraction",  # notional fraction of equity that meets the volatility target
    "kelly_raw",  # p - (1 - p) / b
    "kelly_risk_fraction",  # kelly_fraction * max(raw, 0): fraction of equity lost at the stop
    "kelly_cap",  # notional fraction of equity whose stop-out loses kelly_risk_fraction
    "size_fraction",  # unsigned notional fraction of equity an entry would take
    "size_binding",  # SIZE_CAPS code of the cap that set size_fraction (NaN: no entry)
    "stop_dist",  # price distance of the stop from the entry
    "tp_dist",  # price distance of the take profit from the entry
    "current",  # current signed position, fraction of equity
    "proposed",  # signed target before the risk gate
    "approved",  # signed target after the risk gate
    "action",
    "state",  # trading state code after the evaluation
)
O_VOTES = OUTPUT_NAMES.index(f"vote_{VOTE_NAMES[0]}")  # N_VOTES slots
O_MISSING = OUTPUT_NAMES.index(f"missing_{VOTE_NAMES[0]}")  # N_VOTES slots
O_TA_SCORE = OUTPUT_NAMES.index("ta_score")
O_ML_SCORE = OUTPUT_NAMES.index("ml_score")
O_ML_PROB = OUTPUT_NAMES.index("ml_prob")
O_ML_AVAILABLE = OUTPUT_NAMES.index("ml_available")
O_ML_W_XGB = OUTPUT_NAMES.index("ml_w_xgb")
O_ML_W_LSTM = OUTPUT_NAMES.index("ml_w_lstm")
O_FUSED_SCORE = OUTPUT_NAMES.index("fused_score")
O_DIRECTION = OUTPUT_NAMES.index("direction")
O_CONFIDENCE = OUTPUT_NAMES.index("confidence")
O_PROB = OUTPUT_NAMES.index("prob")
O_VOL_FRACTION = OUTPUT_NAMES.index("vol_fraction")
O_KELLY_RAW = OUTPUT_NAMES.index("kelly_raw")
O_KELLY_RISK = OUTPUT_NAMES.index("kelly_risk_fraction")
O_KELLY_CAP = OUTPUT_NAMES.index("kelly_cap")
O_SIZE_FRACTION = OUTPUT_NAMES.index("size_fraction")
O_SIZE_BINDING = OUTPUT_NAMES.index("size_binding")
O_STOP_DIST = OUTPUT_NAMES.index("stop_dist")
O_TP_DIST = OUTPUT_NAMES.index("tp_dist")
O_CURRENT = OUTPUT_NAMES.index("current")
O_PROPOSED = OUTPUT_NAMES.index("proposed")
O_APPROVED = OUTPUT_NAMES.index("approved")
O_ACTION = OUTPUT_NAMES.index("action")
O_STATE = OUTPUT_NAMES.index("state")
N_OUT = len(OUTPUT_NAMES)


@kernel
def sign(x: float) -> float:
    """-1, 0 or +1 (0 for NaN)."""
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return 0.0


@kernel
def _vote(out: FloatArray, index: int, value: float, missing: bool) -> None:
    out[O_VOTES + index] = 0.0 if missing else value
    out[O_MISSING + index] = 1.0 if missing else 0.0


@kernel
def ta_signal_kernel(feat: FloatArray, cfg: FloatArray, out: FloatArray) -> float:
    """Five rule votes in [-1, 1] and their weighted mean (a NaN feature: vote 0, flagged)."""
    ema_cross = feat[F_EMA_CROSS]
    adx = feat[F_ADX]
    trend = sign(ema_cross) if adx >= cfg[FU_ADX_MIN] else 0.0
    _vote(out, 0, trend, math.isnan(ema_cross) or math.isnan(adx))

    rsi = feat[F_RSI]
    momentum = 0.0
    if rsi > cfg[FU_RSI_HIGH]:
        momentum = 1.0
    elif rsi < cfg[FU_RSI_LOW]:
        momentum = -1.0
    _vote(out, 1, momentum, math.isnan(rsi))

    hist = feat[F_MACD_HIST]
    _vote(out, 2, sign(hist), math.isnan(hist))

    percent_b = feat[F_BB_PERCENT_B]
    reversion = 0.0
    if percent_b > 1.0:
        reversion = -1.0
    elif percent_b < 0.0:
        reversion = 1.0
    _vote(out, 3, reversion, math.isnan(percent_b))

    breakout = feat[F_DONCHIAN_BREAKOUT]
    _vote(out, 4, min(max(breakout, -1.0), 1.0), math.isnan(breakout))

    total = 0.0
    weights = 0.0
    for i in range(N_VOTES):
        w = cfg[FU_W_VOTES + i]
        total += w * out[O_VOTES + i]
        weights += w
    score = total / weights
    out[O_TA_SCORE] = score
    return score


@kernel
def ml_signal_kernel(p_xgb: float, p_lstm: float, cfg: FloatArray, out: FloatArray) -> float:
    """Weighted 2p - 1 over the available families (NaN or outside [0, 1]: unavailable).

    Weights of the available families are renormalized to sum to 1; with none available the
    score and probability are NaN.
    """
    w_xgb = cfg[FU_W_XGB]
    w_lstm = cfg[FU_W_LSTM]
    ok_xgb = w_xgb > 0.0 and 0.0 <= p_xgb <= 1.0
    ok_lstm = w_lstm > 0.0 and 0.0 <= p_lstm <= 1.0
    total = (w_xgb if ok_xgb else 0.0) + (w_lstm if ok_lstm else 0.0)
    out[O_ML_AVAILABLE] = (1.0 if ok_xgb else 0.0) + (1.0 if ok_lstm else 0.0)
    if total <= 0.0:
        out[O_ML_W_XGB] = 0.0
        out[O_ML_W_LSTM] = 0.0
        out[O_ML_PROB] = math.nan
        out[O_ML_SCORE] = math.nan
        return math.nan
    e_xgb = w_xgb / total if ok_xgb else 0.0
    e_lstm = w_lstm / total if ok_lstm else 0.0
    prob = 0.0
    if ok_xgb:
        prob += e_xgb * p_xgb
    if ok_lstm:
        prob += e_lstm * p_lstm
    score = 2.0 * prob - 1.0
    out[O_ML_W_XGB] = e_xgb
    out[O_ML_W_LSTM] = e_lstm
    out[O_ML_PROB] = prob
    out[O_ML_SCORE] = score
    return score


@kernel
def fuse_kernel(cfg: FloatArray, out: FloatArray) -> float:
    """Fused score, direction and confidence (= |score|) from the TA and ML scores in ``out``."""
    ta = out[O_TA_SCORE]
    ml = out[O_ML_SCORE]
    w_ta = cfg[FU_W_TA]
    w_ml = cfg[FU_W_ML]
    if w_ml == 0.0:
        score = ta
    elif math.isnan(ml):
        # no new risk without the ML half unless TA alone is explicitly allowed
        score = ta if (cfg[FU_ALLOW_TA_ONLY] != 0.0 and w_ta > 0.0) else 0.0
    elif w_ta == 0.0:
        score = ml
    else:
        mode = int(cfg[FU_MODE])
        blended = (w_ta * ta + w_ml * ml) / (w_ta + w_ml)
        if mode == MODE_AGREEMENT:
            agree = sign(ta) != 0.0 and sign(ta) == sign(ml)
            score = blended if agree else 0.0
        elif mode == MODE_ML_GATED:
            confirmed = sign(ml) != 0.0 and sign(ml) * ta > cfg[FU_GATE_TA_MIN]
            score = ml if confirmed else 0.0
        else:
            score = blended
    score = min(max(score, -1.0), 1.0)
    direction = sign(score) if abs(score) >= cfg[FU_ENTRY] else 0.0
    out[O_FUSED_SCORE] = score
    out[O_DIRECTION] = direction
    out[O_CONFIDENCE] = abs(score)
    return float(score)


@kernel
def kelly_probability(direction: float, cfg: FloatArray, out: FloatArray) -> float:
    """P(return over the models' horizon > 0) in ``direction``: the win probability Kelly uses.

    The calibrated ML probability (combined with the fuser's family weights) of that direction
    when the fuser uses ML and some family is available; otherwise (TA alone) the fused score
    mapped back to a probability, (1 + |score|) / 2, which is not calibrated. It is not the
    probability that the take profit is hit before the stop.
    """
    if direction == 0.0:
        return math.nan
    if cfg[FU_W_ML] > 0.0 and out[O_ML_AVAILABLE] > 0.0:
        p_up: float = out[O_ML_PROB]
        return p_up if direction > 0.0 else 1.0 - p_up
    fused: float = out[O_FUSED_SCORE]
    return 0.5 * (1.0 + abs(fused))


@kernel
def size_kernel(
    direction: float,
    prob: float,
    garch_variance: float,
    natr_pct: float,
    price: float,
    cfg: FloatArray,
    out: FloatArray,
) -> float:
    """Unsigned entry fraction of equity: min(vol target, Kelly notional cap, max leverage).

    Kelly sizes the loss, not the notional: with p = ``prob`` and b = ``kelly_payoff_ratio``,
    kelly_fraction * max(p - (1 - p) / b, 0) is the fraction of equity a stop-out may cost; the
    stop sits stop_atr ATRs away (ATR = natr / 100 * price), so a stop-out loses notional *
    stop / price and the Kelly cap on the notional fraction is that loss / (stop / price).
    0 when the direction is 0 or the variance, ATR or probability is unknown (no entry without
    a stop). Also writes every cap, the code of the one that bound (ties: the earlier in
    ``SIZE_CAPS``; NaN without an entry) and the stop and take-profit distances.
    """
    atr = natr_pct / 100.0 * price
    if not atr > 0.0:
        atr = math.nan
    stop_dist = cfg[SZ_STOP_ATR] * atr
    tp_dist = cfg[SZ_TP_ATR] * atr
    vol_frac = math.nan
    if garch_variance > 0.0:
        sigma_annual = math.sqrt(garch_variance) * math.sqrt(cfg[SZ_BARS_PER_YEAR])
        vol_frac = cfg[SZ_TARGET_VOL] / sigma_annual
    raw = prob - (1.0 - prob) / cfg[SZ_KELLY_PAYOFF]
    risk = math.nan
    if not math.isnan(raw):
        risk = cfg[SZ_KELLY_FRACTION] * (raw if raw > 0.0 else 0.0)
    kelly_cap = risk / (stop_dist / price)  # NaN without a stop or a probability
    fraction = 0.0
    binding = math.nan
    if direction != 0.0 and not (math.isnan(vol_frac) or math.isnan(kelly_cap)):
        fraction = vol_frac
        binding = float(CAP_VOL_TARGET)
        if kelly_cap < fraction:
            fraction = kelly_cap
            binding = float(CAP_KELLY)
        if cfg[SZ_MAX_LEVERAGE] < fraction:
            fraction = cfg[SZ_MAX_LEVERAGE]
            binding = float(CAP_LEVERAGE)
    out[O_PROB] = prob
    out[O_VOL_FRACTION] = vol_frac
    out[O_KELLY_RAW] = raw
    out[O_KELLY_RISK] = risk
    out[O_KELLY_CAP] = kelly_cap
    out[O_SIZE_FRACTION] = fraction
    out[O_SIZE_BINDING] = binding
    out[O_STOP_DIST] = stop_dist
    out[O_TP_DIST] = tp_dist
    return fraction


@kernel
def propose_target(
    current: float, direction: float, score: float, size: float, cfg: FloatArray
) -> float:
    """Signed target before the gate: enter or reverse at ``size``, hold, or close.

    Flat: enter in ``direction``. Same direction: hold (sizes are set at entry; the gate trims).
    Opposite direction: reverse. No direction: hold unless the score is against the position
    by more than the exit threshold, then close.
    """
    if current == 0.0:
        return direction * size
    side = sign(current)
    if direction == side:
        return current
    if direction == -side:
        return direction * size
    if side * score < -cfg[FU_EXIT]:
        return 0.0
    return current


@kernel
def reduce_only(target: float, current: float) -> float:
    """``target`` clamped so that it never adds risk: same side as ``current``, not larger."""
    lo = min(0.0, current)
    hi = max(0.0, current)
    return min(max(target, lo), hi)


@kernel
def update_state_kernel(
    state: FloatArray, equity: float, day: int, model_error: bool, cfg: FloatArray
) -> None:
    """Advance the trading state to ``equity`` at UTC ``day``: ACTIVE, REDUCING or HALTED.

    New day: day-start equity and the order count reset and a daily-loss halt is released;
    when ``halt_reset_days`` > 0, an episode (REDUCING or a sticky halt) that began that many
    days ago or more is released: sticky halts and errors cleared, the peak re-based to the
    current equity. Then: peak update, consecutive model errors, daily loss >= limit → HALTED
    for the day, drawdown >= hard → HALTED (sticky), errors >= max → HALTED (sticky), drawdown
    >= soft → REDUCING (until the drawdown recovers below soft). An episode's start day is the
    first day of REDUCING, moved forward by each later sticky halt.
    """
    mask = int(state[RS_HALT_MASK])
    if day != state[RS_DAY]:
        state[RS_DAY] = day
        state[RS_DAY_START] = equity
        state[RS_ORDERS] = 0.0
        mask &= ~HALT_DAILY_LOSS
        began = state[RS_HALT_DAY]
        reset_days = cfg[RK_RESET_DAYS]
        if began >= 0.0 and reset_days > 0.0 and day - began >= reset_days:
            mask = 0
            state[RS_PEAK] = equity
            state[RS_ERRORS] = 0.0
            state[RS_HALT_DAY] = -1.0
    if math.isnan(state[RS_PEAK]) or equity > state[RS_PEAK]:
        state[RS_PEAK] = equity
    state[RS_ERRORS] = state[RS_ERRORS] + 1.0 if model_error else 0.0

    day_start = state[RS_DAY_START]
    loss = 1.0 - equity / day_start if day_start > 0.0 else 1.0
    if loss >= cfg[RK_DAILY_LOSS]:
        mask |= HALT_DAILY_LOSS
    peak = state[RS_PEAK]
    drawdown = 1.0 - equity / peak if peak > 0.0 else 1.0
    if drawdown >= cfg[RK_HARD_DD] and (mask & HALT_DRAWDOWN) == 0:
        mask |= HALT_DRAWDOWN
        state[RS_HALT_DAY] = day
    if state[RS_ERRORS] >= cfg[RK_MAX_ERRORS] and (mask & HALT_BREAKER) == 0:
        mask |= HALT_BREAKER
        state[RS_HALT_DAY] = day
    reducing = drawdown >= cfg[RK_SOFT_DD]
    if reducing and state[RS_HALT_DAY] < 0.0:
        state[RS_HALT_DAY] = day
    elif not reducing and (mask & (HALT_DRAWDOWN | HALT_BREAKER)) == 0:
        state[RS_HALT_DAY] = -1.0  # the episode is over
    state[RS_HALT_MASK] = mask
    if mask != 0:
        state[RS_STATE] = STATE_HALTED
    elif reducing:
        state[RS_STATE] = STATE_REDUCING
    else:
        state[RS_STATE] = STATE_ACTIVE


@kernel
def _check(checks: FloatArray, index: int, passed: bool, observed: float, limit: float) -> None:
    checks[index, CK_PASSED] = 1.0 if passed else 0.0
    checks[index, CK_OBSERVED] = observed
    checks[index, CK_LIMIT] = limit


@kernel
def gate_kernel(
    sym: int,
    proposed: float,
    positions: FloatArray,
    equity: float,
    feature_age: float,
    n_models: float,
    confidence: float,
    garch_variance: float,
    var_quantile: float,
    state: FloatArray,
    cfg: FloatArray,
    checks: FloatArray,
) -> float:
    """Approved signed target for symbol ``sym`` and the check table, in the fixed check order.

    ``positions`` holds every symbol's signed position as a fraction of equity (``sym``'s is
    the current one). Kill switch or HALTED: target 0 (flatten). REDUCING, stale features,
    too few models, low confidence or an unknown VaR: reduce only. Then |target| is capped by
    max position, the gross exposure left by the other symbols and the VaR limit; at the daily
    order limit only risk-reducing orders pass. An approved order counts toward the limit.
    Each check's ``passed`` says whether its condition holds; ``observed``/``limit`` are the
    figures it compared (caps compare the proposal).
    """
    current = positions[sym]
    code = int(state[RS_STATE])
    mask = int(state[RS_HALT_MASK])
    kill = state[RS_KILL] != 0.0 or cfg[RK_KILL] != 0.0

    _check(checks, CK_KILL, not kill, 1.0 if kill else 0.0, 0.0)
    _check(checks, CK_STATE, code == STATE_ACTIVE, float(code), float(STATE_ACTIVE))
    fresh = feature_age <= cfg[RK_MAX_AGE]
    _check(checks, CK_STALE, fresh, feature_age, cfg[RK_MAX_AGE])
    models_ok = n_models >= cfg[RK_MIN_MODELS]
    _check(checks, CK_MODEL, models_ok, n_models, cfg[RK_MIN_MODELS])
    confident = confidence >= cfg[RK_MIN_CONFIDENCE]
    _check(checks, CK_LOW_CONFIDENCE, confident, confidence, cfg[RK_MIN_CONFIDENCE])

    size = abs(proposed)
    _check(checks, CK_POSITION, size <= cfg[RK_POSITION], size, cfg[RK_POSITION])
    others = 0.0
    for j in range(len(positions)):
        if j != sym:
            others += abs(positions[j])
    gross_room = max(cfg[RK_GROSS] - others, 0.0)
    # passed compares the same figure the cap uses, so a check fails whenever its cap binds
    _check(checks, CK_GROSS, size <= gross_room, others + size, cfg[RK_GROSS])

    day_start = state[RS_DAY_START]
    loss = 1.0 - equity / day_start if day_start > 0.0 else 1.0
    _check(checks, CK_DAILY_LOSS, (mask & HALT_DAILY_LOSS) == 0, loss, cfg[RK_DAILY_LOSS])
    peak = state[RS_PEAK]
    drawdown = 1.0 - equity / peak if peak > 0.0 else 1.0
    dd_limit = cfg[RK_HARD_DD] if drawdown >= cfg[RK_HARD_DD] else cfg[RK_SOFT_DD]
    dd_ok = drawdown < cfg[RK_SOFT_DD] and (mask & HALT_DRAWDOWN) == 0
    _check(checks, CK_MAX_DRAWDOWN, dd_ok, drawdown, dd_limit)

    unit_var = math.sqrt(garch_variance) * var_quantile if garch_variance >= 0.0 else math.nan
    var_known = unit_var > 0.0
    var_room = cfg[RK_VAR] / unit_var if var_known else 0.0
    var_observed = size * unit_var if var_known else math.nan
    _check(checks, CK_VAR, var_known and size <= var_room, var_observed, cfg[RK_VAR])
    _check(
        checks,
        CK_CIRCUIT_BREAKER,
        (mask & HALT_BREAKER) == 0,
        state[RS_ERRORS],
        cfg[RK_MAX_ERRORS],
    )
    orders = state[RS_ORDERS]
    _check(checks, CK_ORDER_RATE, orders < cfg[RK_MAX_ORDERS], orders, cfg[RK_MAX_ORDERS])

    if kill or code == STATE_HALTED or not equity > 0.0:
        approved = 0.0
    else:
        approved = proposed
        if code == STATE_REDUCING or not (fresh and models_ok and confident and var_known):
            approved = reduce_only(approved, current)
        cap = min(cfg[RK_POSITION], gross_room)
        if var_known:
            cap = min(cap, var_room)
        if abs(approved) > cap:
            approved = sign(approved) * cap
        adds_risk = approved * current < 0.0 or abs(approved) > abs(current)
        if orders >= cfg[RK_MAX_ORDERS] and adds_risk:
            approved = reduce_only(approved, current)
    if approved != current:
        state[RS_ORDERS] = orders + 1.0
    return approved


@kernel
def action_code(current: float, target: float) -> int:
    """HOLD, BUY, SELL, CLOSE or REDUCE for the move from ``current`` to ``target``."""
    if target == current:
        return ACTION_HOLD
    if target == 0.0:
        return ACTION_CLOSE
    if target * current > 0.0 and abs(target) < abs(current):
        return ACTION_REDUCE
    return ACTION_BUY if target > current else ACTION_SELL


@kernel
def decide_kernel(
    feat: FloatArray,
    p_xgb: float,
    p_lstm: float,
    garch_variance: float,
    var_quantile: float,
    price: float,
    day: int,
    feature_age: float,
    model_error: bool,
    sym: int,
    positions: FloatArray,
    equity: float,
    state: FloatArray,
    cfg_fuser: FloatArray,
    cfg_sizing: FloatArray,
    cfg_risk: FloatArray,
    out: FloatArray,
    checks: FloatArray,
) -> float:
    """One decision for symbol ``sym`` at a bar close: signals, fusion, sizing and the gate.

    Uses only its arguments and the risk ``state`` (updated in place); fills ``out`` (every
    component) and ``checks``; returns the approved signed target fraction of equity.
    """
    update_state_kernel(state, equity, day, model_error, cfg_risk)
    ta_signal_kernel(feat, cfg_fuser, out)
    ml_signal_kernel(p_xgb, p_lstm, cfg_fuser, out)
    score = fuse_kernel(cfg_fuser, out)
    direction = out[O_DIRECTION]
    prob = kelly_probability(direction, cfg_fuser, out)
    size = size_kernel(direction, prob, garch_variance, feat[F_NATR], price, cfg_sizing, out)
    current = positions[sym]
    proposed = propose_target(current, direction, score, size, cfg_fuser)
    approved = gate_kernel(
        sym,
        proposed,
        positions,
        equity,
        feature_age,
        out[O_ML_AVAILABLE],
        out[O_CONFIDENCE],
        garch_variance,
        var_quantile,
        state,
        cfg_risk,
        checks,
    )
    out[O_CURRENT] = current
    out[O_PROPOSED] = proposed
    out[O_APPROVED] = approved
    out[O_ACTION] = action_code(current, approved)
    out[O_STATE] = state[RS_STATE]
    return approved
