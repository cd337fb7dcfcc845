"""Small builders for journey folders in a tmp_path."""

from __future__ import annotations

import textwrap
from pathlib import Path

from automations.definition.validate import Problem

EMAIL = '---\nsubject: "Hi {{ member.first_name }}"\npreheader: "News"\n---\n<p>Hello</p>\n'
SMS = "Hi {{ member.first_name }}\n"

MINIMAL = """\
id: {id}
name: Minimal
trigger:
  type: event
  event: order.completed
entry:
  every_time: true
steps:
  - id: hello
    type: send_email
    template: hello
"""


def write(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` (dedented) to ``folder/name`` and return the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def journey(folder: Path, journey_id: str, text: str | None = None) -> Path:
    """A journey file named after its id; the minimal valid journey unless ``text`` is given."""
    return write(folder, f"{journey_id}.yaml", text or MINIMAL.format(id=journey_id))


def template(folder: Path, locale: str, name: str, channel: str, text: str | None = None) -> Path:
    """A template under ``folder/templates``."""
    body = text if text is not None else (EMAIL if channel == "email" else SMS)
    return write(folder / "templates" / locale, f"{name}.{channel}.liquid", body)


def lines(problems: list[Problem]) -> list[str]:
    """Problems as the CLI prints them."""
    return [str(p) for p in problems]
