"""Load the Feast declarations of `feature_repo/` without importing it, bound to one home's tables.

Each `feature_repo/*.py` file runs in a fresh namespace (no `import`, no `sys.modules` entry), so
two homes in one process never share declaration objects, and every `FileSource` path is
rewritten to `<features_dir>/<file name>`: Feast resolves a relative path against the current
directory and stores it in the registry, so it must be absolute and follow the active home.
"""

from __future__ import annotations

import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from sextant.errors import ConfigError

if TYPE_CHECKING:
    from feast import Entity, FeatureService, FeatureView, FileSource
    from feast.feast_object import FeastObject

__all__ = ["DEFAULT_REPO_DIR", "Declarations", "load_declarations"]


class _HasName(Protocol):
    @property
    def name(self) -> str: ...


_Named = TypeVar("_Named", bound=_HasName)

# The declarations live next to the packages in the source checkout (DESIGN.md layout).
DEFAULT_REPO_DIR = Path(__file__).resolve().parents[1] / "feature_repo"


@dataclass(frozen=True, slots=True)
class Declarations:
    """The Feast objects declared in a feature repo, sources bound to one features directory."""

    entities: tuple[Entity, ...]
    sources: tuple[FileSource, ...]
    views: tuple[FeatureView, ...]
    services: tuple[FeatureService, ...]

    def all(self) -> list[FeastObject]:
        """Every object, for `FeatureStore.apply`."""
        return [*self.entities, *self.sources, *self.views, *self.services]

    def view(self, name: str) -> FeatureView:
        """The feature view called ``name``; ConfigError names the declared ones."""
        for view in self.views:
            if view.name == name:
                return view
        known = ", ".join(v.name for v in self.views)
        raise ConfigError(f"unknown feature view {name!r}; declared: {known}")

    def service(self, name: str) -> FeatureService:
        """The feature service called ``name``; ConfigError names the declared ones."""
        for service in self.services:
            if service.name == name:
                return service
        known = ", ".join(sorted(s.name for s in self.services))
        raise ConfigError(f"unknown feature service {name!r}; declared: {known}")


def load_declarations(features_dir: Path, repo_dir: Path | None = None) -> Declarations:
    """Run every `*.py` of the repo in a fresh namespace; bind file sources to ``features_dir``."""
    from feast import Entity, FeatureService, FeatureView, FileSource

    repo = DEFAULT_REPO_DIR if repo_dir is None else repo_dir
    files = sorted(repo.glob("*.py"))
    if not files:
        raise ConfigError(f"no Feast declarations (*.py) in {repo}")
    entities: dict[str, Entity] = {}
    sources: dict[str, FileSource] = {}
    views: dict[str, FeatureView] = {}
    services: dict[str, FeatureService] = {}
    for path in files:
        namespace = runpy.run_path(str(path), run_name=f"feature_repo_{path.stem}")
        for value in namespace.values():
            if isinstance(value, Entity):
                _collect(entities, value, path)
            elif isinstance(value, FileSource):
                _collect(sources, value, path)
            elif isinstance(value, FeatureView):
                _collect(views, value, path)
            elif isinstance(value, FeatureService):
                _collect(services, value, path)
    # A view normally holds the very source object declared beside it; bind each object once.
    bound = {id(s): s for s in (*sources.values(), *(v.batch_source for v in views.values()))}
    for source in bound.values():
        _bind(source, features_dir)
    return Declarations(
        entities=tuple(entities.values()),
        sources=tuple(sources.values()),
        views=tuple(views.values()),
        services=tuple(services.values()),
    )


def _collect(into: dict[str, _Named], value: _Named, path: Path) -> None:
    """Keep ``value`` under its name; the same name declared twice is a ConfigError."""
    if into.setdefault(value.name, value) is not value:
        raise ConfigError(
            f"{type(value).__name__} {value.name!r} is declared twice (again in {path})"
        )


def _bind(source: object, features_dir: Path) -> None:
    """Point a file source at ``features_dir`` (its declared path must be a bare file name)."""
    from feast import FileSource

    if not isinstance(source, FileSource):
        raise ConfigError(f"feature repo source {source!r} is not a FileSource")
    name = Path(source.path).name
    if name != source.path:
        raise ConfigError(
            f"FileSource {source.name!r} path {source.path!r} must be a bare file name: "
            "the loader places it under the home's features directory"
        )
    source.file_options.uri = str(features_dir / name)
