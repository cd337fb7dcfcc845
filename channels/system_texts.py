"""What the program says itself, in the member's language: the unsubscribe, survey and
referral pages, the SMS opt-out wording and STOP/START/HELP replies, the email footer's
unsubscribe link, and tier names.

Each locale has one YAML file of short Liquid texts (plain text, never HTML: the pages
escape what they show). The program ships ``channels/shipped_texts/<locale>/texts.yaml``;
marketers override any text in ``<templates>/_system/<locale>/texts.yaml``, giving only
the keys they change. A text is looked up along the locale chain (member locale, its
language, the program's DEFAULT_LOCALE, ``en``), override before shipped text in each
locale. Numbers and dates are formatted by Babel in the page's locale, and a text that
names a count may give one form per CLDR plural category (``one``, ``few``, ``many``,
``other``), picked by Babel's plural rules.

Overrides are read when they change (no publish needed). A broken override file or
text is skipped with a warning, so a page always shows; ``loyalty journeys validate``
reports the problem with its file and line.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.core import negotiate_locale
from babel.dates import format_date
from babel.numbers import format_decimal
from liquid import BoundTemplate, Environment, StrictDefaultUndefined
from liquid.exceptions import LiquidError

from loyalty.yaml_source import YamlError, load_yaml

__all__ = [
    "PLURAL_CATEGORIES",
    "SHIPPED_DIR",
    "SYSTEM_DIR",
    "TEXTS",
    "TEXTS_FILE",
    "TIER_PREFIX",
    "SystemTexts",
    "available_locales",
    "preferred_locales",
    "system_texts",
    "texts_path",
]

log = logging.getLogger(__name__)

#: The folder under the templates folder where marketers override system texts.
SYSTEM_DIR = "_system"
#: The one file per locale that holds them.
TEXTS_FILE = "texts.yaml"
#: The texts the program ships: ``SHIPPED_DIR/<locale>/texts.yaml``.
SHIPPED_DIR = Path(__file__).with_name("shipped_texts")
#: Tier names are texts too: ``tiers.<tier>``; a tier without one shows its id.
TIER_PREFIX = "tiers."
#: The CLDR plural categories a counted text may give forms for (``other`` is required).
PLURAL_CATEGORIES = ("zero", "one", "two", "few", "many", "other")

_P = frozenset({"program"})
#: Every text, and the variables it may use. Texts in COUNTED may give plural forms.
TEXTS: dict[str, frozenset[str]] = {
    "page.too_large": frozenset(),
    "unsubscribe.title": _P,
    "unsubscribe.intro": _P,
    "unsubscribe.button": _P,
    "unsubscribe.points": _P | {"points"},
    "unsubscribe.expiring": _P | {"points", "date"},
    "unsubscribe.done_title": _P,
    "unsubscribe.done": _P,
    "unsubscribe.nothing_title": _P,
    "unsubscribe.nothing": _P,
    "unsubscribe.not_found_title": _P,
    "unsubscribe.not_found": _P,
    "survey.title": _P,
    "survey.nps.question": _P,
    "survey.nps.low": _P,
    "survey.nps.high": _P,
    "survey.csat.question": _P,
    "survey.csat.low": _P,
    "survey.csat.high": _P,
    "survey.scale_hint": _P | {"lowest", "highest", "low", "high"},
    "survey.chosen": _P | {"score"},
    "survey.send_answer": _P | {"score"},
    "survey.choose_another": _P,
    "survey.comment_label": _P,
    "survey.bad_score": _P | {"lowest", "highest"},
    "survey.long_comment": _P | {"max_chars"},
    "survey.thanks_title": _P,
    "survey.saved_with_comment": _P,
    "survey.saved": _P,
    "survey.send_comment": _P,
    "survey.not_found_title": _P,
    "survey.not_found": _P,
    "survey.sms_thanks": _P,
    "referral.not_found_title": _P,
    "referral.not_found": _P,
    "email.unsubscribe": _P,
    "sms.opt_out": _P,
    "sms.stop": _P | {"support", "frequency"},
    "sms.start": _P | {"support", "frequency"},
    "sms.help": _P | {"support", "frequency"},
}

#: Texts about a number of things: their forms follow the plural rules of the locale.
COUNTED = frozenset({"unsubscribe.points", "unsubscribe.expiring"})


class _Environment(Environment):
    loop_iteration_limit = 1_000
    output_stream_limit = 16 * 1024
    context_depth_limit = 10


_ENV = _Environment(undefined=StrictDefaultUndefined, autoescape=False)

#: One text: plain, or forms by plural category.
Text = str | dict[str, str]


def texts_path(folder: Path, locale: str) -> Path:
    """Where the texts of ``locale`` live under ``folder`` (shipped or ``<templates>/_system``)."""
    return folder / locale / TEXTS_FILE


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"survey": {"nps": {"question": …}}}`` as ``{"survey.nps.question": …}``; plural
    forms (a mapping of plural categories) stay one value."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not (name in COUNTED and _is_plural(value)):
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value
    return out


def _is_plural(value: dict[Any, Any]) -> bool:
    return bool(value) and all(k in PLURAL_CATEGORIES for k in value)


def _usable(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return (
        isinstance(value, dict)
        and "other" in value
        and _is_plural(value)
        and all(isinstance(v, str) for v in value.values())
    )


@functools.lru_cache(maxsize=64)
def _read(path: Path, stamp: tuple[int, int]) -> dict[str, Text]:
    """The usable texts of one file (cached by modification time and size)."""
    try:
        doc = load_yaml(path)
    except YamlError as exc:
        log.warning(
            "system_texts.unreadable",
            extra={"file": str(path), "line": exc.location.line, "error": exc.message},
        )
        return {}
    if not isinstance(doc.data, dict):
        return {}
    texts = flatten(doc.data)
    return {k: v for k, v in texts.items() if _usable(v) and (k in TEXTS or _tier(k))}


def _tier(key: str) -> bool:
    return key.startswith(TIER_PREFIX) and len(key) > len(TIER_PREFIX)


#: How long a texts file's modification time and size are trusted before the file is looked
#: at again: an edited file is read within this, and a batch of messages looks once.
RECHECK_SECONDS = 1.0
#: Path → (when it was looked at, monotonic; its modification time and size, or None).
_stamps: dict[Path, tuple[float, tuple[int, int] | None]] = {}


def _texts(folder: Path, locale: str) -> tuple[dict[str, Text], float]:
    """The usable texts of ``locale`` under ``folder``, and when (monotonic) the file was
    last looked at: they stand for RECHECK_SECONDS from then."""
    path = texts_path(folder, locale)
    now = time.monotonic()
    known = _stamps.get(path)
    if known is not None and now - known[0] < RECHECK_SECONDS:
        looked, stamp = known
    else:
        try:
            stat = path.stat()
        except OSError:
            stamp = None
        else:
            stamp = (stat.st_mtime_ns, stat.st_size)
        looked = now
        _stamps[path] = (now, stamp)
    return (_read(path, stamp) if stamp is not None else {}), looked


def available_locales(templates_dir: Path | None) -> list[str]:
    """The locales that have texts: shipped, or overridden under ``templates_dir``."""
    found = {p.name for p in SHIPPED_DIR.iterdir() if texts_path(SHIPPED_DIR, p.name).is_file()}
    system = templates_dir / SYSTEM_DIR if templates_dir is not None else None
    if system is not None and system.is_dir():
        found |= {p.name for p in system.iterdir() if texts_path(system, p.name).is_file()}
    return sorted(found)


def preferred_locales(accept_language: str | None) -> list[str]:
    """The locales of an ``Accept-Language`` header, most wanted first."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, index, tag.strip()))
    return [tag for _, _, tag in sorted(ranked)]


def _chain(locales: list[str | None]) -> list[str]:
    chain: list[str] = []
    for locale in [*locales, "en"]:
        if not locale:
            continue
        for candidate in (locale, locale.split("-")[0]):
            if candidate not in chain:
                chain.append(candidate)
    return chain


#: (templates folder, wanted locale, default locale) → (until when, monotonic, it stands;
#: the texts of its chain): a batch of messages asks for the same few many times.
_chains: dict[tuple[Path | None, str | None, str], tuple[float, SystemTexts]] = {}


def system_texts(
    templates_dir: Path | None,
    member_locale: str | None,
    default_locale: str,
    *,
    accept_language: str | None = None,
) -> SystemTexts:
    """The texts for a member of ``member_locale``: member → language → default → ``en``.

    Without a member locale, ``accept_language`` (a visitor's browser) picks among the
    locales that have texts.
    """
    wanted = member_locale
    if not wanted and accept_language:
        wanted = negotiate_locale(
            preferred_locales(accept_language), available_locales(templates_dir), sep="-"
        )
    key = (templates_dir, wanted, default_locale)
    known = _chains.get(key)
    if known is not None and time.monotonic() < known[0]:
        return known[1]
    system = templates_dir / SYSTEM_DIR if templates_dir is not None else None
    sources: list[tuple[str, dict[str, Text]]] = []
    # The chain stands as long as the oldest look at one of its files does.
    oldest = time.monotonic()
    for locale in _chain([wanted, default_locale]):
        for folder in (system, SHIPPED_DIR):
            if folder is not None:
                texts, looked = _texts(folder, locale)
                oldest = min(oldest, looked)
                if texts:
                    sources.append((locale, texts))
    found = SystemTexts(sources[0][0] if sources else "en", tuple(sources))
    if len(_chains) >= _MAX_CHAINS:
        _chains.clear()
    _chains[key] = (oldest + RECHECK_SECONDS, found)
    return found


#: Chains kept at most (a few locales per templates folder in a process).
_MAX_CHAINS = 256


@dataclass(frozen=True)
class SystemTexts:
    """The texts of one member's locale chain, and Babel formatting in its locale."""

    #: The language the texts are in (the first locale of the chain that has any).
    locale: str
    sources: tuple[tuple[str, dict[str, Text]], ...]
    #: Texts rendered already, by key, count and values (the same footer for every email).
    _rendered: dict[Any, str] = field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def babel(self) -> Locale:
        try:
            return Locale.parse(self.locale, sep="-")
        except (UnknownLocaleError, ValueError):
            return Locale.parse("en")

    def __call__(self, key: str, *, count: int | None = None, **values: Any) -> str:
        """The text ``key`` with ``values``; ``count`` picks the plural form of counted texts.

        An override that cannot render falls back to the next locale's text.
        """
        try:
            memo = (key, count, tuple(sorted(values.items())))
            return self._rendered[memo]
        except TypeError:  # a value that cannot be a key: rendered each time
            return self._render(key, count, values)
        except KeyError:
            text = self._render(key, count, values)
            self._rendered[memo] = text
            return text

    def _render(self, key: str, count: int | None, values: dict[str, Any]) -> str:
        for locale, texts in self.sources:
            text = texts.get(key)
            if text is None:
                continue
            if isinstance(text, dict):
                form = self.babel.plural_form(count if count is not None else 0)
                text = text.get(form, text["other"])
            try:
                return _compiled(text).render(**values).strip()
            except LiquidError as exc:
                log.warning(
                    "system_texts.unrenderable",
                    extra={"key": key, "locale": locale, "error": str(exc).splitlines()[0]},
                )
        if key.startswith(TIER_PREFIX):
            return key.removeprefix(TIER_PREFIX)
        raise KeyError(f"no system text {key!r}")

    def number(self, value: int | Decimal) -> str:
        """``1250`` as ``1 250`` in Polish, ``1,250`` in English."""
        return str(format_decimal(value, locale=self.babel))

    def date(self, value: date | datetime) -> str:
        """A day in words: ``31 grudnia 2026``, ``December 31, 2026``."""
        day = value.date() if isinstance(value, datetime) else value
        return str(format_date(day, format="long", locale=self.babel))

    def tier(self, tier: str) -> str:
        """The name of a tier in this language (its id when no text names it)."""
        return self(f"{TIER_PREFIX}{tier}")


@functools.lru_cache(maxsize=512)
def _compiled(text: str) -> BoundTemplate:
    return _ENV.from_string(text)
