"""Checks of a template against what its step provides: syntax, filters and variables."""

from __future__ import annotations

from liquid import Environment
from liquid.exceptions import LiquidError

from channels.templates import TemplateError, TemplateSource
from loyalty.yaml_source import Location

from .fields import suggest
from .variables import Contract, check_variable

__all__ = ["analyse_template"]

#: Tags that load another template file.
PARTIAL_TAGS = ("render", "include")

#: Parsing only: the same tags and filters as rendering, none of its data.
_ENV = Environment()


def _position(text: str, index: int, start: Location) -> tuple[int, int]:
    before = text[:index]
    line = before.count("\n")
    if line == 0:
        return start.line, start.column + index
    return start.line + line, index - before.rfind("\n")


def analyse_template(source: TemplateSource, contract: Contract) -> list[TemplateError]:
    """Syntax errors, unknown filters and variables outside the contract, each with its place."""
    parts = [(source.body, Location(source.body_line, 1))]
    parts += [(source.fields[k], source.field_locations[k]) for k in source.fields]
    errors: list[TemplateError] = []
    for text, start in parts:
        try:
            template = _ENV.from_string(text)
        except LiquidError as exc:
            index = exc.token.start_index if exc.token else 0
            line, column = _position(text, max(index, 0), start)
            errors.append(TemplateError(line, column, f"Liquid syntax: {exc.message}"))
            continue
        # Partials are not followed: a template names no other file (a missing one
        # would otherwise stop the whole check).
        analysis = template.analyze(include_partials=False)
        for tag in PARTIAL_TAGS:
            for span in analysis.tags.get(tag, []):
                line, column = _position(text, span.index, start)
                errors.append(
                    TemplateError(
                        line,
                        column,
                        f"`{{% {tag} %}}` is not supported: a template cannot load other files",
                        "write the shared part into the template",
                    )
                )
        for name, spans in analysis.filters.items():
            if name not in _ENV.filters:
                line, column = _position(text, spans[0].index, start)
                hint = suggest(name, sorted(_ENV.filters), "the Liquid documentation")
                errors.append(TemplateError(line, column, f"unknown filter `{name}`", hint))
        for variables in analysis.globals.values():
            for variable in variables:
                verdict = check_variable(list(variable.segments), contract)
                if verdict:
                    line, column = _position(text, variable.span.index, start)
                    errors.append(TemplateError(line, column, *verdict))
    return errors
