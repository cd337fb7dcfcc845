"""Validate journey files: schema, structure, templates, variables; problems at file:line:column.

A broken file yields problems and no journey; every other file is still checked
and loaded, so one bad edit never stops the journeys that are fine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import TypeAdapter, ValidationError

from channels.templates import (
    Channel,
    TemplateError,
    TemplateSource,
    partial_path,
    read_template,
    template_path,
)
from loyalty.rewards import CATALOG_FILE
from loyalty.yaml_source import Document, Location, YamlError, load_yaml

from .engagement import Catalog, catalog_of, engagement_issues
from .event_flow import event_issues, events_at
from .fields import DEFAULT_TIERS, MEMBER_FIELDS
from .messages import describe_error
from .models import (
    CrmTask,
    EventTrigger,
    HttpCall,
    Journey,
    SendEmail,
    SendSms,
    SendSurvey,
    Step,
    Trigger,
    UpdateCrm,
)
from .program import Program
from .structure import structure_issues
from .system_checks import system_text_problems
from .template_checks import Partials, analyse_template
from .variables import ANY, Contract, event_variable, provided_variables

__all__ = [
    "JourneyFile",
    "Problem",
    "check_file",
    "journey_files",
    "load_journeys",
    "validate_paths",
]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong, where it is, and what would be right."""

    file: str
    line: int
    column: int
    message: str
    hint: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        label = "warning: " if self.severity == "warning" else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}:{self.column}: {label}{self.message}{hint}"


@dataclass(frozen=True)
class JourneyFile:
    """A journey that passed validation, with the text it came from."""

    path: Path
    journey: Journey
    source: str
    digest: str
    document: Document = field(repr=False, compare=False)


def journey_files(paths: Iterable[Path | str]) -> list[Path]:
    """The journey files named by ``paths``: files as given, folders' ``*.yaml``/``*.yml``.

    A folder's rewards catalog (``rewards.yaml``) is not a journey.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(
                p
                for p in path.iterdir()
                if p.suffix in (".yaml", ".yml") and p.is_file() and p.name != CATALOG_FILE
            )
        else:
            out.append(path)
    return out


def validate_paths(
    paths: Iterable[Path | str],
    templates_dir: Path | str | None = None,
    tiers: Sequence[str] = DEFAULT_TIERS,
    *,
    program: Program | None = None,
) -> list[Problem]:
    """Every problem (errors and warnings) in the journey files named by ``paths``."""
    return load_journeys(paths, templates_dir, tiers, program=program)[1]


def load_journeys(
    paths: Iterable[Path | str],
    templates_dir: Path | str | None = None,
    tiers: Sequence[str] = DEFAULT_TIERS,
    *,
    program: Program | None = None,
) -> tuple[list[JourneyFile], list[Problem]]:
    """The journeys without errors, and every problem found.

    ``templates_dir`` defaults to the ``templates`` folder next to each file;
    ``program`` (tiers and event types, see ``Program.from_settings``) defaults
    to the built-in event types and ``tiers``.
    """
    program = program or Program(tiers=tuple(tiers))
    loaded: list[JourneyFile] = []
    problems: list[Problem] = []
    seen_ids: dict[str, Path] = {}
    reported: set[Problem] = set()
    files = journey_files(paths)
    # Engagement conditions may name any journey of the program: the files' folders hold them.
    catalog = catalog_of(files)
    system_dirs: set[Path] = set()
    for path in files:
        templates = Path(templates_dir) if templates_dir else None
        system_dirs.add(templates if templates is not None else path.parent / "templates")
        try:
            journey_file, file_problems = check_file(
                path, templates, program=program, catalog=catalog
            )
        except (Exception, RecursionError) as exc:  # one bad file never stops the others
            journey_file = None
            reason = "it nests too deeply" if isinstance(exc, RecursionError) else str(exc)
            file_problems = [
                Problem(str(path), 1, 1, f"cannot check this file: {reason}", "fix or remove it")
            ]
        if journey_file is not None:
            other = seen_ids.get(journey_file.journey.id)
            if other is not None:
                file_problems.append(
                    _at(
                        str(path),
                        journey_file.document.locate(("id",)),
                        f"journey id `{journey_file.journey.id}` is also used by {other}",
                        "every journey needs its own id",
                    )
                )
            seen_ids.setdefault(journey_file.journey.id, path)
        # Journeys sharing a template would each report its problems; say it once.
        fresh = sorted(set(file_problems) - reported)
        reported.update(fresh)
        problems += fresh
        if journey_file is not None and not any(p.severity == "error" for p in file_problems):
            loaded.append(journey_file)
    # The texts the program says itself (pages, SMS replies), as marketers override them.
    for folder in sorted(system_dirs):
        problems += sorted(
            Problem(str(p), e.line, e.column, e.message, e.hint)
            for p, e in system_text_problems(folder, program.tiers)
        )
    return loaded, problems


def check_file(
    path: Path,
    templates_dir: Path | None,
    tiers: Sequence[str] = DEFAULT_TIERS,
    *,
    program: Program | None = None,
    catalog: Catalog | None = None,
) -> tuple[JourneyFile | None, list[Problem]]:
    """Check one journey file; the journey is returned when its schema is valid.

    ``catalog`` (the program's journeys and their steps) defaults to the journey
    files of the file's folder.
    """
    program = program or Program(tiers=tuple(tiers))
    catalog = catalog if catalog is not None else catalog_of([path])
    name = str(path)
    try:
        doc = load_yaml(path)
    except YamlError as exc:
        return None, [_at(name, exc.location, exc.message, exc.hint)]
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else "not a mapping"
        hint = "start with `id: …`, `name: …`, `trigger: …`; see journeys/README.md"
        return None, [_at(name, doc.locate(()), f"the file is {what}", hint)]
    try:
        journey = Journey.model_validate(doc.data, context=program.context())
    except ValidationError as exc:
        # The templates are still checked, so one run shows every problem of the file.
        broken = _broken_file_sends(doc.data, program)
        templates = templates_dir if templates_dir is not None else path.parent / "templates"
        return None, [
            *_schema_problems(name, doc, exc),
            *_send_problems(name, doc, broken, *_raw_locales(doc.data), templates),
        ]
    problems = [
        _at(name, doc.locate(i.path, key=i.key), i.message, i.hint, i.severity)
        for i in [
            *structure_issues(journey, program.tiers),
            *event_issues(journey),
            *engagement_issues(journey, catalog),
        ]
    ]
    if journey.id != path.stem:
        problems.append(
            _at(
                name,
                doc.locate(("id",)),
                f"the id `{journey.id}` differs from the file name `{path.name}`",
                f"rename the file to {journey.id}{path.suffix} or set id: {path.stem}",
            )
        )
    templates = templates_dir if templates_dir is not None else path.parent / "templates"
    problems += _template_problems(name, doc, journey, templates)
    digest = hashlib.sha256(doc.text.encode()).hexdigest()
    return JourneyFile(path, journey, doc.text, digest, doc), problems


def _at(
    file: str, where: Location, message: str, hint: str = "", severity: Severity = "error"
) -> Problem:
    return Problem(file, where.line, where.column, message, hint, severity)


def _schema_problems(name: str, doc: Document, exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[int, int]] = set()
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = error["type"] == "extra_forbidden"
        if error["type"] == "union_tag_invalid" and doc.exists((*loc, "type")):
            loc = (*loc, "type")
        where = doc.locate(loc, key=key)
        if (where.line, where.column) in seen:
            continue  # the other arms of a union at the same spot say the same thing
        seen.add((where.line, where.column))
        message, hint = describe_error(error, doc)
        problems.append(_at(name, where, message, hint))
    return problems


def _sends(journey: Journey) -> Iterable[tuple[int, str, Channel, bool]]:
    for index, step in enumerate(journey.steps):
        if isinstance(step, SendEmail) and step.template:
            yield index, step.template, "email", False
        elif isinstance(step, SendSms):
            yield index, step.template, "sms", False
        elif isinstance(step, SendSurvey):
            yield index, step.template, step.channel, True


#: What a template may use when the journey itself is broken: the member and journey as
#: always, the trigger's event when it can be told, every other root unchecked.
_LENIENT: Contract = {
    **dict.fromkeys(
        (
            "event",
            "occurrence",
            "points_expiring",
            "points_expiring_at",
            "award",
            "unsubscribe_url",
            "survey_url",
        ),
        ANY,
    ),
    "member": frozenset(MEMBER_FIELDS),
    "journey": frozenset({"id", "name"}),
}

_TRIGGER: TypeAdapter[Trigger] = TypeAdapter(Trigger)

_STEP: TypeAdapter[Step] = TypeAdapter(Step)

Send = tuple[int, str, Channel, Contract]


def _broken_file_sends(data: object, program: Program) -> list[Send]:
    """The send steps of a file whose schema fails that are fine on their own."""
    steps = data.get("steps") if isinstance(data, dict) else None
    contract = dict(_LENIENT)
    try:
        trigger = _TRIGGER.validate_python(
            data.get("trigger") if isinstance(data, dict) else None, context=program.context()
        )
    except ValidationError:
        trigger = None
    waits = any(isinstance(s, dict) and "until_event" in s for s in steps or [])
    # Without waits for events, every step sees the trigger's event.
    event = (
        event_variable(frozenset({trigger.event})) if isinstance(trigger, EventTrigger) else None
    )
    if event is not None and not waits:
        contract["event"] = event
    sends: list[Send] = []
    for index, raw in enumerate(steps if isinstance(steps, list) else []):
        try:
            step = _STEP.validate_python(raw, context=program.context())
        except ValidationError:
            continue
        if isinstance(step, SendEmail) and step.template:
            sends.append((index, step.template, "email", contract))
        elif isinstance(step, SendSms | SendSurvey):
            channel: Channel = "sms" if isinstance(step, SendSms) else step.channel
            sends.append((index, step.template, channel, contract))
    return sends


def _raw_locales(data: object) -> tuple[list[str], str]:
    """``locales`` and ``locale`` of a file whose schema fails, as far as they read."""
    raw = data if isinstance(data, dict) else {}
    locale = raw.get("locale") if isinstance(raw.get("locale"), str) else "en"
    listed = raw.get("locales")
    if isinstance(listed, list) and listed and all(isinstance(x, str) for x in listed):
        return list(listed), str(locale)
    return [str(locale)], str(locale)


def _template_problems(
    name: str, doc: Document, journey: Journey, templates_dir: Path
) -> list[Problem]:
    reaching = events_at(journey)
    sends: list[Send] = []
    for index, template, channel, survey in _sends(journey):
        events = reaching[journey.steps[index].id]
        contract = provided_variables(journey, channel, survey=survey, events=events)
        sends.append((index, template, channel, contract))
    problems = _send_problems(name, doc, sends, journey.all_locales, journey.locale, templates_dir)
    return problems + _crm_problems(name, doc, journey, reaching)


def _send_problems(
    name: str,
    doc: Document,
    sends: list[Send],
    locales: list[str],
    default_locale: str,
    templates_dir: Path,
) -> list[Problem]:
    problems: list[Problem] = []
    for index, template, channel, contract in sends:
        where = doc.locate(("steps", index, "template"))
        for locale in locales:
            path = template_path(templates_dir, locale, template, channel)
            if not path.is_file():
                hint = "create it, or correct the template name"
                if len(locales) > 1:
                    hint += f", or remove {locale} from locales"
                message = f"template `{template}` has no {locale} {channel} version: no file {path}"
                problems.append(_at(name, where, message, hint))
                continue
            source = read_template(path, channel)
            partials = _partials(templates_dir, [locale, locale.split("-")[0], default_locale])
            errors = (
                [source]
                if isinstance(source, TemplateError)
                else analyse_template(source, contract, partials)
            )
            problems += [Problem(str(path), e.line, e.column, e.message, e.hint) for e in errors]
            problems += [
                Problem(str(p), e.line, e.column, e.message, e.hint) for p, e in partials.problems
            ]
    return problems


def _partials(templates_dir: Path, locales: list[str]) -> Partials:
    """Partials of a template in ``locales[0]``: its own locale's, else the default locale's."""
    chain = list(dict.fromkeys(locales))

    def find(partial: str) -> Path | None:
        paths = (partial_path(templates_dir, locale, partial) for locale in chain)
        return next((p for p in paths if p.is_file()), None)

    def missing(partial: str) -> str:
        return "no file " + " or ".join(str(partial_path(templates_dir, x, partial)) for x in chain)

    return Partials(find, missing)


def _crm_problems(
    name: str, doc: Document, journey: Journey, reaching: dict[str, frozenset[str]]
) -> list[Problem]:
    """Template variables in `update_crm` properties, `http` data and `crm_task` texts."""
    problems: list[Problem] = []
    for index, step in enumerate(journey.steps):
        texts: dict[tuple[str | int, ...], object] = {}
        if isinstance(step, UpdateCrm):
            texts = {("properties", key): value for key, value in step.properties.items()}
        elif isinstance(step, HttpCall):
            texts = {("data", key): value for key, value in step.data.items()}
        elif isinstance(step, CrmTask):
            texts = {("subject",): step.subject, ("body",): step.body}
        else:
            continue
        contract = provided_variables(journey, "sms", events=reaching[step.id])
        for path, value in texts.items():
            if not isinstance(value, str) or "{" not in value:
                continue
            where = doc.value_start(("steps", index, *path))
            source = TemplateSource(Path(name), "sms", value, where.line)
            for error in analyse_template(source, contract):
                column = where.column + error.column - 1 if error.line == where.line else 1
                problems.append(Problem(name, error.line, column, error.message, error.hint))
    return problems
