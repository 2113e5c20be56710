"""The shape every read-only tool has, and the record of one call to it.

A tool is a named, documented function of typed arguments that reads recorded evidence and
returns a JSON-serialisable dict (ids, times as ISO-8601 UTC text, values). The tool set is fixed
in code (`agents.tools.registry.READ_ONLY_TOOLS`); nothing outside it can be called, and no tool
writes anything. Every call made while answering a question is kept as a ``ToolCall``: an
explanation's citations name a call's id and a field of its output, and the grounding guard
checks the explanation's numbers against those outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from sextant.errors import DataValidationError

__all__ = ["Tool", "ToolArgumentError", "ToolCall", "field_value"]

ContextT = TypeVar("ContextT")


class ToolArgumentError(DataValidationError):
    """A tool was called with arguments its schema refuses (the message names tool and field)."""


@dataclass(frozen=True, slots=True)
class Tool(Generic[ContextT]):
    """One read-only tool: ``func(context, args)`` returns a JSON-serialisable dict.

    ``args_schema`` is a strict pydantic model (unknown keys are errors); ``description`` is what
    the LLM reads to choose the tool, so it says what comes back and in which units.
    """

    name: str
    description: str
    args_schema: type[BaseModel]
    func: Callable[[ContextT, Any], dict[str, Any]]

    def parse(self, args: Mapping[str, Any]) -> BaseModel:
        """Validate ``args`` against the schema; a refusal names the tool and the field."""
        try:
            return self.args_schema.model_validate(dict(args))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "arguments"
            raise ToolArgumentError(
                f"tool {self.name!r}: {where}: {first.get('msg', 'invalid')}", field=where
            ) from exc

    def run(self, context: ContextT, args: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``args`` and call the tool."""
        return self.func(context, self.parse(args))


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call made while answering: its id (what citations name), tool, arguments, output."""

    id: str
    tool: str
    args: dict[str, Any]
    output: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with the explanation)."""
        return {"id": self.id, "tool": self.tool, "args": self.args, "output": self.output}


def field_value(output: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of a tool output (list items by index: ``checks.2.observed``).

    Raises ``KeyError`` naming the path when any step is missing: a citation that does not
    resolve is an error, not a None.
    """
    node: Any = output
    for step in path.split("."):
        if isinstance(node, Mapping) and step in node:
            node = node[step]
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            raise KeyError(f"no field {path!r} in the tool output (stopped at {step!r})")
    return node
