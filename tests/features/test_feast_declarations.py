"""The Feast declarations' test: `feature_repo/` and `features/definitions.py` say the same thing."""

from __future__ import annotations

import ast
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from features.definitions import (
    FEATURE_SERVICES,
    FEATURE_TTL,
    FEATURE_VIEWS,
    FEATURES,
    SERVICE_VECTOR_VIEWS,
    VECTOR_FIELD,
    Kind,
    by_name,
)
from features.feast_declarations import DEFAULT_REPO_DIR, Declarations, load_declarations
from sextant.errors import ConfigError

# what a declarations file may import: Feast and the standard library's time types
ALLOWED_IMPORTS = {"__future__", "datetime", "feast", "feast.types"}


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home") / "features"


@pytest.fixture(scope="module")
def declared(features_dir: Path) -> Declarations:
    return load_declarations(features_dir)


def test_every_feature_sits_in_the_view_of_its_kind_in_registry_order(
    declared: Declarations,
) -> None:
    from feast.types import Float64

    # Arrange
    expected = {FEATURE_VIEWS[kind]: [f.name for f in FEATURES if f.kind is kind] for kind in Kind}

    # Act
    kind_views = [v for v in declared.views if v.name in expected]
    views = {v.name: [field.name for field in v.features] for v in kind_views}
    dtypes = {field.dtype for v in kind_views for field in v.features}

    # Assert
    assert views == expected
    assert dtypes == {Float64}
    assert len(by_name()) == len(FEATURES)  # names are unique across views


def test_views_read_available_at_from_their_table_under_the_home(
    declared: Declarations, features_dir: Path
) -> None:
    from feast import FileSource

    # Act
    sources = {v.name: v.batch_source for v in declared.views}
    files = {n: s for n, s in sources.items() if isinstance(s, FileSource)}

    # Assert
    assert files.keys() == sources.keys()
    assert {n: s.timestamp_field for n, s in files.items()} == dict.fromkeys(files, "available_at")
    assert {n: Path(s.path) for n, s in files.items()} == {
        n: features_dir / f"{n}.parquet" for n in files
    }
    assert {v.ttl for v in declared.views} == {FEATURE_TTL} == {timedelta(days=2)}
    assert all(v.online for v in declared.views)
    assert [v.entities for v in declared.views] == [["symbol"]] * len(declared.views)


def test_every_service_has_one_vector_view_with_one_float_list_feature(
    declared: Declarations,
) -> None:
    from feast.types import Array, Float64

    # Act
    vectors = {
        v.name: [(field.name, field.dtype) for field in v.features]
        for v in declared.views
        if v.name not in FEATURE_VIEWS.values()
    }

    # Assert: the kind views and the vector views are every view there is
    assert vectors == {
        view: [(VECTOR_FIELD, Array(Float64))] for view in SERVICE_VECTOR_VIEWS.values()
    }
    assert SERVICE_VECTOR_VIEWS.keys() == FEATURE_SERVICES.keys()


def test_the_entity_is_the_symbol_string(declared: Declarations) -> None:
    from feast import ValueType

    # Act
    (entity,) = declared.entities

    # Assert
    assert (entity.name, entity.join_key, entity.value_type) == (
        "symbol",
        "symbol",
        ValueType.STRING,
    )


def test_every_service_lists_exactly_its_registry_features(declared: Declarations) -> None:
    # Arrange
    kind_of = {f.name: FEATURE_VIEWS[f.kind] for f in FEATURES}

    for name, features in FEATURE_SERVICES.items():
        # Act
        projections = declared.service(name).feature_view_projections
        listed = [(p.name, field.name) for p in projections for field in p.features]

        # Assert: same features, each from its kind's view, in registry order within each view,
        # views in order of their first feature (Feast returns a service's columns per view)
        views_in_order = list(dict.fromkeys(kind_of[f] for f in features))
        grouped = [(v, f) for v in views_in_order for f in features if kind_of[f] == v]
        assert listed == grouped, name
    assert {s.name for s in declared.services} == set(FEATURE_SERVICES)


def test_the_repo_imports_only_feast_and_the_standard_library() -> None:
    # Arrange
    files = sorted(DEFAULT_REPO_DIR.glob("*.py"))

    # Act
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for path in files
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }

    # Assert
    assert files
    assert imported <= ALLOWED_IMPORTS


def test_each_load_is_fresh_and_bound_to_its_own_directory(tmp_path: Path) -> None:
    # Arrange
    modules_before = set(sys.modules)

    # Act
    first = load_declarations(tmp_path / "a")
    second = load_declarations(tmp_path / "b")

    # Assert
    assert {Path(s.path).parent for s in first.sources} == {tmp_path / "a"}
    assert {Path(s.path).parent for s in second.sources} == {tmp_path / "b"}
    assert first.views[0] is not second.views[0]
    assert not any(
        "feature_repo" in m or "declarations" in m for m in set(sys.modules) - modules_before
    )


def test_a_source_path_that_is_not_a_bare_file_name_is_refused(tmp_path: Path) -> None:
    # Arrange
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "bad.py").write_text(
        "from feast import FileSource\n"
        "src = FileSource(name='s', path='data/ta.parquet', timestamp_field='available_at')\n",
        encoding="utf-8",
    )

    # Act / Assert
    with pytest.raises(ConfigError, match=r"'data/ta.parquet' must be a bare file name"):
        load_declarations(tmp_path / "features", repo)


def test_a_name_declared_in_two_files_is_refused(tmp_path: Path) -> None:
    # Arrange
    repo = tmp_path / "repo"
    repo.mkdir()
    for stem in ("a", "b"):
        (repo / f"{stem}.py").write_text(
            "from feast import Entity, ValueType\n"
            "symbol = Entity(name='symbol', join_keys=['symbol'], value_type=ValueType.STRING)\n",
            encoding="utf-8",
        )

    # Act / Assert
    with pytest.raises(
        ConfigError, match=r"Entity 'symbol' is declared twice \(again in .*b\.py\)"
    ):
        load_declarations(tmp_path / "features", repo)


def test_an_unknown_service_or_an_empty_repo_is_a_config_error(
    declared: Declarations, tmp_path: Path
) -> None:
    # Act / Assert
    with pytest.raises(ConfigError, match=r"unknown feature service 'nope'.*xgb_direction_v1"):
        declared.service("nope")
    with pytest.raises(ConfigError, match=r"no Feast declarations"):
        load_declarations(tmp_path / "features", tmp_path)
