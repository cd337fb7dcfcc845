"""Message templates: where they live, their front matter, and what they refer to.

Layout: ``<templates_dir>/<locale>/<name>.<channel>.liquid`` with channel
``email`` or ``sms``. An email template starts with a front-matter block::

    ---
    subject: "Happy birthday, {{ member.first_name }}!"
    preheader: "A gift is waiting in your account"
    ---
    <p>HTML body …</p>

``subject`` is required, ``preheader`` optional; both are Liquid too.

Shared parts (a footer, an email layout) live in ``_partials/<locale>/<name>.liquid``
and are pulled in with ``{% render 'name' %}``; a locale without its own copy
uses the journey's default locale's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from loyalty.yaml_source import Location, YamlError, parse_yaml

__all__ = [
    "EMAIL_FIELDS",
    "PARTIALS_DIR",
    "RENDER_TAG",
    "Channel",
    "TemplateError",
    "TemplateSource",
    "parse_template",
    "partial_key",
    "partial_names",
    "partial_path",
    "read_partials",
    "read_template",
    "template_path",
]

#: Front-matter keys of an email template, and whether each is required.
EMAIL_FIELDS: dict[str, bool] = {"subject": True, "preheader": False}

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*(?:\r?\n|\Z)", re.S | re.M)

#: The two channels a template can be written for.
Channel = Literal["email", "sms"]


def template_path(templates_dir: Path, locale: str, name: str, channel: Channel) -> Path:
    """Where the ``name`` template for ``channel`` in ``locale`` lives."""
    return templates_dir / locale / f"{name}.{channel}.liquid"


#: The folder of shared parts that templates pull in with ``{% render 'name' %}``.
PARTIALS_DIR = "_partials"

#: ``{% render 'name' … %}`` with the partial's name in quotes.
RENDER_TAG = re.compile(r"""\{%-?\s*render\s+(?:'([^']*)'|"([^"]*)")""")


def partial_path(templates_dir: Path, locale: str, name: str) -> Path:
    """Where the ``name`` partial in ``locale`` lives: ``_partials/<locale>/<name>.liquid``."""
    return templates_dir / PARTIALS_DIR / locale / f"{name}.liquid"


def partial_key(locale: str, name: str) -> str:
    """The key of a partial among a stored version's templates."""
    return f"{PARTIALS_DIR}/{locale}/{name}"


def partial_names(text: str) -> list[str]:
    """The partials a template's text renders, in order of first use."""
    names = [
        m.group(1) if m.group(1) is not None else m.group(2) for m in RENDER_TAG.finditer(text)
    ]
    return list(dict.fromkeys(names))


def read_partials(templates_dir: Path, names: Iterable[str] | None = None) -> dict[str, str]:
    """The text of the partials (all, or ``names`` and what they render), keyed ``partial_key``."""
    folder = templates_dir / PARTIALS_DIR
    locales = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    found: dict[str, str] = {}
    todo = (
        list(names)
        if names is not None
        else [p.stem for locale in locales for p in (folder / locale).glob("*.liquid")]
    )
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for locale in locales:
            path = partial_path(templates_dir, locale, name)
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                found[partial_key(locale, name)] = text
                todo += partial_names(text)
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class TemplateError:
    """Something wrong in a template file, at a 1-based line and column."""

    line: int
    column: int
    message: str
    hint: str = ""


@dataclass
class TemplateSource:
    """A template file split into its Liquid parts, each with where it starts."""

    path: Path
    channel: Channel
    body: str
    body_line: int = 1
    fields: dict[str, str] = field(default_factory=dict)
    field_locations: dict[str, Location] = field(default_factory=dict)

    @property
    def subject(self) -> str | None:
        return self.fields.get("subject")

    @property
    def preheader(self) -> str | None:
        return self.fields.get("preheader")


def read_template(path: Path, channel: Channel) -> TemplateSource | TemplateError:
    """Read a template file and split off its front matter."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return TemplateError(1, 1, f"cannot read the template: {exc}")
    return parse_template(text, path, channel)


def parse_template(text: str, path: Path, channel: Channel) -> TemplateSource | TemplateError:
    """Split a template's text into its front matter fields and body."""
    match = _FRONT_MATTER.match(text)
    if channel == "sms":
        if match:
            return TemplateError(1, 1, "SMS templates have no front matter", "remove the --- block")
        return TemplateSource(path, channel, text)
    if not match:
        return TemplateError(
            1, 1, "an email template starts with a front-matter block", _FRONT_MATTER_HINT
        )
    try:
        doc = parse_yaml(match.group(1))
    except YamlError as exc:
        return TemplateError(exc.location.line + 1, exc.location.column, exc.message, exc.hint)
    if not isinstance(doc.data, dict):
        return TemplateError(
            2, 1, "the front matter must be `key: value` lines", _FRONT_MATTER_HINT
        )
    source = TemplateSource(path, channel, text[match.end() :])
    source.body_line = text[: match.end()].count("\n") + 1
    for key, value in doc.data.items():
        where = doc.values[(key,)]
        at = Location(where.line + 1, where.column)
        if key not in EMAIL_FIELDS:
            key_at = doc.keys[(key,)]
            hint = "allowed: " + ", ".join(EMAIL_FIELDS)
            return TemplateError(key_at.line + 1, key_at.column, f"unknown field `{key}`", hint)
        if not isinstance(value, str) or not value.strip():
            return TemplateError(at.line, at.column, f"`{key}` must be text", _FRONT_MATTER_HINT)
        quoted = text.splitlines()[at.line - 1][at.column - 1 : at.column] in ("'", '"')
        source.fields[key] = value
        source.field_locations[key] = Location(at.line, at.column + int(quoted))
    for key, required in EMAIL_FIELDS.items():
        if required and key not in source.fields:
            return TemplateError(1, 1, f"the front matter has no `{key}`", _FRONT_MATTER_HINT)
    return source


_FRONT_MATTER_HINT = 'begin the file with ---, subject: "…", preheader: "…", ---'
