"""Tool over the model registry: versions, aliases, metrics, parameters and the promotion ledger."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.tools.base import Tool
from agents.tools.context import Evidence, json_float
from sextant.contracts import CHALLENGER, CHAMPION, FAMILIES, REGISTERED_MODELS, ModelTag

__all__ = ["MODEL_INFO", "ModelInfoArgs", "model_info"]

MAX_LEDGER = 20  # the latest promotion decisions per family
# version tags worth showing as they are (the rest are large JSON or internal)
_PLAIN_TAGS = (
    ModelTag.FEATURE_SERVICE,
    ModelTag.LABEL_HORIZON,
    "data_range",
    "config_hash",
    "git_commit",
    "parity_max_abs_err",
    "onnx_p99_ms",
)
_JSON_METRIC_TAGS = (ModelTag.SELECTION_METRICS, ModelTag.REPORTED_METRICS)


class ModelInfoArgs(BaseModel):
    """One family (xgb, lstm, garch), or all of them."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["xgb", "lstm", "garch"] | None = Field(None)


def _metrics(tags: dict[str, str]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for key in _JSON_METRIC_TAGS:
        if key in tags:
            try:
                values = json.loads(tags[key])
            except ValueError:
                continue
            out[key.removesuffix("_metrics")] = {
                str(k): json_float(v) for k, v in values.items() if isinstance(v, int | float)
            }
    return out


def _baseline(tags: dict[str, str]) -> dict[str, Any] | None:
    if ModelTag.BASELINE not in tags:
        return None
    try:
        raw = json.loads(tags[ModelTag.BASELINE])
    except ValueError:
        return None
    out: dict[str, Any] = {"name": raw.get("name")}
    for span in ("selection", "reported"):
        if isinstance(raw.get(span), dict):
            out[span] = {k: json_float(v) for k, v in raw[span].items()}
    return out


def _family(evidence: Evidence, family: str) -> dict[str, Any]:
    name = REGISTERED_MODELS[family]
    client = evidence.registry
    try:
        versions = list(client.search_model_versions(f"name = '{name}'"))
    except Exception:  # no registered model of that name yet
        versions = []
    aliases: dict[str, str] = {}
    try:
        aliases = {str(a): str(v) for a, v in client.get_registered_model(name).aliases.items()}
    except Exception:  # the model is not registered at all
        aliases = {}
    rows = []
    for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
        tags = dict(version.tags)
        run_params: dict[str, str] = {}
        try:
            run = client.get_run(str(version.run_id))
            run_params = {
                k: v for k, v in run.data.params.items() if k.startswith(("final.", family + "."))
            }
        except Exception:  # the run is gone (deleted experiment): the version still stands
            run_params = {}
        rows.append(
            {
                "version": str(version.version),
                "aliases": sorted(a for a, v in aliases.items() if v == str(version.version)),
                "created_at_ms": int(version.creation_timestamp),
                "run_id": version.run_id,
                "metrics": _metrics(tags),
                "baseline": _baseline(tags),
                "tags": {k: tags[k] for k in _PLAIN_TAGS if k in tags},
                "params": dict(sorted(run_params.items())),
            }
        )
    ledger = [e for e in evidence.ledger() if e.get("family") == family][-MAX_LEDGER:]
    return {
        "family": family,
        "model": name,
        "champion": aliases.get(CHAMPION),
        "challenger": aliases.get(CHALLENGER),
        "versions": rows,
        "promotions": [
            {
                "time": e.get("time"),
                "promoted": e.get("promoted"),
                "reason": e.get("reason"),
                "detail": e.get("detail"),
                "challenger_version": e.get("challenger_version"),
                "champion_version": e.get("champion_version"),
                "metrics": {k: json_float(v) for k, v in (e.get("metrics") or {}).items()},
            }
            for e in ledger
        ],
    }


def model_info(evidence: Evidence, args: ModelInfoArgs) -> dict[str, Any]:
    """Each family's registered versions (aliases, metrics, parameters, tags) and promotions."""
    families = FAMILIES if args.family is None else (args.family,)
    return {"families": [_family(evidence, family) for family in families]}


MODEL_INFO: Tool[Evidence] = Tool(
    name="model_info",
    description=(
        "The registered models per family (xgb, lstm: direction; garch: volatility): which "
        "version is champion (live) and challenger, each version's selection and reported "
        "metrics (AUC, log loss, Brier for direction; QLIKE for volatility), its simple "
        "baseline's figures, parameters, tags, and the promotion ledger (each gate decision "
        "with its reason code and figures)."
    ),
    args_schema=ModelInfoArgs,
    func=model_info,
)
