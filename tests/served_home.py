"""A small real home with champions (trained once per session), for the engine's, the service's and
the monitor's tests; the root conftest registers the fixture."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from sextant.settings import Settings


@dataclass(frozen=True)
class ServedHome:
    """A home with sample data, materialized features and a champion for every family."""

    settings: Settings
    last_close: datetime  # the bar close of the latest online vectors


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedHome]:
    """Ingest the sample, build and materialize features, train the quick models (about 50 s),
    and make each challenger the champion (the promotion gate may promote none on the sample)."""
    from features.build import build_features
    from features.feast_store import FeastStore, materialize
    from features.ingest.service import ingest_source
    from features.ingest.sources.sample import SampleSource
    from features.ingest.store import MarketStore
    from models.tracking import Tracking
    from models.training import TrainConfig, train_models
    from sextant.contracts import CHAMPION, REGISTERED_MODELS
    from sextant.settings import load_settings

    settings = load_settings(home=tmp_path_factory.mktemp("served-home"))
    with MarketStore(settings.paths.market_db) as store:
        ingest_source(SampleSource(), store)
    build_features(settings)
    materialize(settings)
    tracking = Tracking.from_settings(settings)
    for report in train_models(settings, TrainConfig.quick(), tracking):
        assert report.model_version is not None, report.family
        tracking.client.set_registered_model_alias(
            REGISTERED_MODELS[report.family], CHAMPION, report.model_version
        )
    as_of = FeastStore(settings).online_vectors("decision_v1", settings.symbols).as_of
    assert as_of[0] is not None
    yield ServedHome(settings, as_of[0].to_pydatetime())
