"""Checks of the marketers' system texts (``templates/_system/<locale>/texts.yaml``).

The same checks as templates get: YAML and Liquid syntax, unknown variables, each with
its file, line and column; and the keys: a text the program does not have, a tier
that TIER_THRESHOLDS does not name, plural forms where no number is counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from channels.system_texts import (
    COUNTED,
    PLURAL_CATEGORIES,
    SYSTEM_DIR,
    TEXTS,
    TEXTS_FILE,
    TIER_PREFIX,
)
from channels.templates import TemplateError, TemplateSource
from loyalty.yaml_source import Document, Path_, YamlError, load_yaml

from .fields import suggest
from .template_checks import analyse_template
from .variables import LEAF

__all__ = ["system_text_problems"]

#: A locale folder's name: ``pl``, ``en``, ``pl-PL``.
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")

_HINT = "see the shipped texts in channels/shipped_texts/en/texts.yaml"


def system_text_problems(
    templates_dir: Path, tiers: Sequence[str]
) -> list[tuple[Path, TemplateError]]:
    """Every problem in the system text overrides under ``templates_dir/_system``."""
    folder = templates_dir / SYSTEM_DIR
    if not folder.is_dir():
        return []
    problems: list[tuple[Path, TemplateError]] = []
    for locale_dir in sorted(p for p in folder.iterdir()):
        if not locale_dir.is_dir():
            problems.append(
                (
                    locale_dir,
                    TemplateError(
                        1, 1, "not a locale folder", f"move it to {folder}/<locale>/{TEXTS_FILE}"
                    ),
                )
            )
            continue
        if not _LOCALE.match(locale_dir.name):
            problems.append(
                (
                    locale_dir,
                    TemplateError(
                        1, 1, f"`{locale_dir.name}` is not a locale", "name it like en, pl or pl-PL"
                    ),
                )
            )
            continue
        for path in sorted(locale_dir.iterdir()):
            if path.name != TEXTS_FILE:
                hint = f"system texts live in {locale_dir / TEXTS_FILE}"
                problems.append((path, TemplateError(1, 1, "unknown file", hint)))
        path = locale_dir / TEXTS_FILE
        if path.is_file():
            problems += [(path, e) for e in _file_problems(path, tiers)]
    return problems


def _file_problems(path: Path, tiers: Sequence[str]) -> list[TemplateError]:
    try:
        doc = load_yaml(path)
    except YamlError as exc:
        return [TemplateError(exc.location.line, exc.location.column, exc.message, exc.hint)]
    if doc.data is None:
        return []
    if not isinstance(doc.data, dict):
        return [TemplateError(1, 1, "the file must be `key: text` lines", _HINT)]
    errors: list[TemplateError] = []
    for key, where, value in _entries(doc.data, ()):
        errors += _entry_problems(doc, key, where, value, tiers)
    return errors


def _entries(data: dict[Any, Any], path: Path_) -> list[tuple[str, Path_, Any]]:
    """Each text with its dotted key and its place in the file; plural forms stay one."""
    out: list[tuple[str, Path_, Any]] = []
    for name, value in data.items():
        where = (*path, str(name))
        key = ".".join(str(x) for x in where)
        nested = isinstance(value, dict) and key not in COUNTED
        if nested and not key.startswith(TIER_PREFIX) and not _known_prefix(key):
            out.append((key, where, value))
        elif nested:
            out += _entries(value, where)
        else:
            out.append((key, where, value))
    return out


def _known_prefix(key: str) -> bool:
    return any(text.startswith(f"{key}.") for text in TEXTS) or key == "tiers"


def _entry_problems(
    doc: Document, key: str, where: Path_, value: Any, tiers: Sequence[str]
) -> list[TemplateError]:
    at = doc.locate(where, key=True)
    if key.startswith(TIER_PREFIX):
        tier = key.removeprefix(TIER_PREFIX)
        if tier not in tiers:
            hint = suggest(tier, list(tiers), "TIER_THRESHOLDS")
            return [TemplateError(at.line, at.column, f"unknown tier `{tier}`", hint)]
        contract: dict[str, frozenset[str]] = {}
    elif key not in TEXTS:
        hint = suggest(key, sorted(TEXTS), "channels/shipped_texts/en/texts.yaml")
        return [TemplateError(at.line, at.column, f"unknown text `{key}`", hint)]
    else:
        contract = dict.fromkeys(TEXTS[key], LEAF)
    if isinstance(value, dict):
        if key not in COUNTED:
            return [
                TemplateError(
                    at.line,
                    at.column,
                    f"`{key}` counts nothing: it has no plural forms",
                    "write one text",
                )
            ]
        errors: list[TemplateError] = []
        for form, text in value.items():
            form_at = doc.locate((*where, form), key=True)
            if form not in PLURAL_CATEGORIES:
                hint = "plural forms: " + ", ".join(PLURAL_CATEGORIES)
                errors.append(
                    TemplateError(
                        form_at.line, form_at.column, f"unknown plural form `{form}`", hint
                    )
                )
                continue
            errors += _text_problems(doc, f"{key}.{form}", (*where, str(form)), text, contract)
        if "other" not in value:
            errors.append(
                TemplateError(
                    at.line,
                    at.column,
                    f"`{key}` needs an `other` form",
                    "the form for any other number",
                )
            )
        return errors
    return _text_problems(doc, key, where, value, contract)


def _text_problems(
    doc: Document, key: str, where: Path_, value: Any, contract: dict[str, frozenset[str]]
) -> list[TemplateError]:
    start = doc.value_start(where)
    if not isinstance(value, str) or not value.strip():
        return [TemplateError(start.line, start.column, f"`{key}` must be text", _HINT)]
    line = doc.text.splitlines()[start.line - 1] if doc.text else ""
    if line[start.column - 1 : start.column] in ("|", ">"):
        # A block text starts on the next line; folding moves its words, so name the line.
        found = analyse_template(TemplateSource(Path(key), "sms", value), contract)
        return [TemplateError(start.line + 1, 1, e.message, e.hint) for e in found]
    source = TemplateSource(Path(key), "sms", value, start.line)
    errors = []
    for error in analyse_template(source, contract):
        # Liquid counts columns from the text's start; the file from its line's.
        column = start.column + error.column - 1 if error.line == start.line else 1
        errors.append(TemplateError(error.line, column, error.message, error.hint))
    return errors
