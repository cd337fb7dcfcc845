"""Rendering messages from Liquid templates: strict, escaped, bounded.

Templates come from the journey version the enrollment entered with, keyed
`locale/name.channel`, with the partials they render (`_partials/locale/name`).
The locale falls back member → journey → `en`; a partial comes from the
template's locale or the next one in that chain that has it.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from liquid import BoundTemplate, DictLoader, Environment, StrictDefaultUndefined
from liquid.exceptions import LiquidError

from channels.templates import PARTIALS_DIR, TemplateError, parse_template

__all__ = ["RenderError", "Rendered", "locale_chain", "render_message", "render_text"]


class _Environment(Environment):
    # Resource limits: a template cannot loop or print without bound.
    loop_iteration_limit = 10_000
    output_stream_limit = 512 * 1024
    context_depth_limit = 30


_HTML = _Environment(undefined=StrictDefaultUndefined, autoescape=True)
_TEXT = _Environment(undefined=StrictDefaultUndefined, autoescape=False)


class RenderError(Exception):
    """The message cannot be rendered; the reason goes on the message."""


@dataclass(frozen=True)
class Rendered:
    channel: str
    locale: str
    body: str
    subject: str | None = None
    preheader: str | None = None
    text: str | None = None
    #: For a provider-side template (SendGrid dynamic template): the data it renders with.
    data: dict[str, Any] | None = None


def locale_chain(member_locale: str | None, journey_locale: str) -> list[str]:
    """Member locale (and its language), then the journey's, then `en`."""
    chain: list[str] = []
    for locale in (member_locale, journey_locale, "en"):
        if not locale:
            continue
        for candidate in (locale, locale.split("-")[0]):
            if candidate not in chain:
                chain.append(candidate)
    return chain


def render_message(
    templates: dict[str, str], name: str, channel: str, chain: list[str], data: dict[str, Any]
) -> Rendered:
    """Render template `name` for `channel` in the first locale of `chain` that has it."""
    for locale in chain:
        text = templates.get(f"{locale}/{name}.{channel}")
        if text is not None:
            break
    else:
        raise RenderError(f"no {channel} template {name!r} in locales {', '.join(chain)}")
    partials = _partials(templates, chain[chain.index(locale) :])
    try:
        parts = _compiled(text, f"{locale}/{name}.{channel}", channel, partials)
        if isinstance(parts, TemplateError):
            raise RenderError(f"{locale}/{name}: line {parts.line}: {parts.message}")
        body_template, subject_template, preheader_template = parts
        if channel == "sms":
            return Rendered("sms", locale, body_template.render(**data).strip())
        body = body_template.render(**data)
        subject = subject_template.render(**data).strip() if subject_template else ""
        preheader = preheader_template.render(**data).strip() if preheader_template else None
    except LiquidError as exc:
        raise RenderError(f"{locale}/{name}.{channel}: {str(exc).splitlines()[0]}") from None
    return Rendered("email", locale, body, subject, preheader, html_to_text(body))


Partials = tuple[tuple[str, str], ...]


def _partials(templates: dict[str, str], chain: list[str]) -> Partials:
    """The version's partials (``_partials/<locale>/<name>``), each from the first locale of
    ``chain`` that has it: the template's own locale, then the fallbacks."""
    found: dict[str, str] = {}
    for locale in reversed(chain):
        prefix = f"{PARTIALS_DIR}/{locale}/"
        found |= {k.removeprefix(prefix): v for k, v in templates.items() if k.startswith(prefix)}
    return tuple(sorted(found.items()))


@functools.lru_cache(maxsize=64)
def _environments(partials: Partials) -> tuple[Environment, Environment]:
    """HTML and text environments whose ``{% render %}`` finds these partials."""
    if not partials:
        return _HTML, _TEXT
    loader = DictLoader(dict(partials))
    return (
        _Environment(undefined=StrictDefaultUndefined, autoescape=True, loader=loader),
        _Environment(undefined=StrictDefaultUndefined, autoescape=False, loader=loader),
    )


@functools.lru_cache(maxsize=256)
def _compiled(
    text: str, label: str, channel: str, partials: Partials = ()
) -> tuple[BoundTemplate, BoundTemplate | None, BoundTemplate | None] | TemplateError:
    """Parse a template once per text: versions are immutable, so the text is the key."""
    source = parse_template(text, Path(f"{label}.liquid"), channel)  # type: ignore[arg-type]
    if isinstance(source, TemplateError):
        return source
    html_env, text_env = _environments(partials)
    if channel == "sms":
        return text_env.from_string(source.body), None, None
    return (
        html_env.from_string(source.body),
        text_env.from_string(source.subject or ""),
        text_env.from_string(source.preheader) if source.preheader else None,
    )


def render_text(text: str, data: dict[str, Any]) -> str:
    """A short Liquid text (a CRM property value, say) rendered with message data."""
    try:
        return _TEXT.from_string(text).render(**data).strip()
    except LiquidError as exc:
        raise RenderError(str(exc).splitlines()[0]) from None


class _TextExtractor(HTMLParser):
    _BREAKS = {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href:
            if not "".join(self.parts).rstrip().endswith(self._href):
                self.parts.append(f" ({self._href})")
            self._href = None
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(body: str) -> str:
    """A plain-text part for an HTML email: text with links spelled out."""
    parser = _TextExtractor()
    parser.feed(body)
    text = html.unescape("".join(parser.parts))
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
