"""Checks of a template against what its step provides: syntax, filters, variables, partials."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from liquid import Environment
from liquid.exceptions import LiquidError

from channels.templates import TemplateError, TemplateSource
from loyalty.yaml_source import Location

from .fields import suggest
from .variables import ANY, Contract, check_variable

__all__ = ["Partials", "analyse_template"]

#: Parsing only: the same tags and filters as rendering, none of its data.
_ENV = Environment()

#: Names a ``render`` tag hands to its partial: ``key: value`` arguments and ``as alias``.
_ARGUMENT = re.compile(r"[,\s](\w+)\s*:")
_ALIAS = re.compile(r"\b(?:with|for)\b.*?\bas\s+(\w+)")
_BOUND = re.compile(r"\b(?:with|for)\b")
#: The tag from its name on (where Liquid's span points): ``render 'footer', …``.
_RENDER_NAME = re.compile(r"""render\s+(?:'([^']*)'|"([^"]*)")""")


@dataclass
class Partials:
    """Where one template's partials come from, and the problems found in them.

    ``find`` gives the file to use for a partial name (None when there is none);
    ``missing`` says where it looked, for the message.
    """

    find: Callable[[str], Path | None]
    missing: Callable[[str], str]
    problems: list[tuple[Path, TemplateError]] = field(default_factory=list)
    _checking: tuple[Path, ...] = ()


def _position(text: str, index: int, start: Location) -> tuple[int, int]:
    before = text[:index]
    line = before.count("\n")
    if line == 0:
        return start.line, start.column + index
    return start.line + line, index - before.rfind("\n")


def analyse_template(
    source: TemplateSource, contract: Contract, partials: Partials | None = None
) -> list[TemplateError]:
    """Syntax errors, unknown filters and variables outside the contract, each with its place.

    With ``partials``, each ``{% render 'name' %}`` must find its partial, which is
    checked against the same contract (its problems go to ``partials.problems``);
    without, a template cannot load other files.
    """
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
        # Partials are followed here, not by Liquid: a missing one must not stop the check.
        analysis = template.analyze(include_partials=False)
        for span in analysis.tags.get("include", []):
            line, column = _position(text, span.index, start)
            errors.append(
                TemplateError(
                    line, column, "`{% include %}` is not supported", "use {% render 'name' %}"
                )
            )
        for span in analysis.tags.get("render", []):
            line, column = _position(text, span.index, start)
            errors += _render(text[span.index :], line, column, contract, partials)
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


def _render(
    tag: str, line: int, column: int, contract: Contract, partials: Partials | None
) -> list[TemplateError]:
    """Check one ``render`` tag (its text starts at the tag) and the partial it names."""
    if partials is None:
        return [
            TemplateError(
                line,
                column,
                "`{% render %}` is not supported here: this text cannot load other files",
                "write the shared part into the text",
            )
        ]
    match = _RENDER_NAME.match(tag)
    if match is None:
        return [
            TemplateError(
                line, column, "name the partial in quotes", "e.g. {% render 'email_footer' %}"
            )
        ]
    name = match.group(1) if match.group(1) is not None else match.group(2)
    path = partials.find(name)
    if path is None:
        return [
            TemplateError(
                line,
                column,
                f"partial `{name}` does not exist: {partials.missing(name)}",
                "create it, or correct the partial's name",
            )
        ]
    if path in partials._checking:
        return [TemplateError(line, column, f"partial `{name}` renders itself", "remove the loop")]
    rest = tag[match.end() : tag.find("%}")]
    local = set(_ARGUMENT.findall(f" {rest}")) | set(_ALIAS.findall(rest))
    if _BOUND.search(rest) and not _ALIAS.search(rest):
        local.add(name)
    inner = {**contract, **dict.fromkeys(local, ANY)}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        partials.problems.append((path, TemplateError(1, 1, f"cannot read the partial: {exc}")))
        return []
    outer = partials._checking
    partials._checking = (*outer, path)
    try:
        found = analyse_template(TemplateSource(path, "sms", text), inner, partials)
    finally:
        partials._checking = outer
    partials.problems += [(path, error) for error in found]
    return []
