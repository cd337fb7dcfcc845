"""``loyalty journeys …`` commands that need only the definition files."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .validate import journey_files, load_journeys

__all__ = ["default_journeys_dir", "journeys"]


def default_journeys_dir() -> Path:
    """``$JOURNEYS_DIR``, else ``./journeys``."""
    return Path(os.environ.get("JOURNEYS_DIR") or "journeys")


@click.group()
def journeys() -> None:
    """Journey definitions: validate, publish, list, preview and simulate."""


@journeys.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Templates folder [default: templates/ next to each journey file].",
)
def validate(paths: tuple[Path, ...], templates_dir: Path | None) -> None:
    """Check journey files (default: $JOURNEYS_DIR or ./journeys); exit 1 on any error."""
    targets = list(paths) or [default_journeys_dir()]
    for target in targets:
        if not target.exists():
            raise click.ClickException(f"{target}: no such file or folder")
    files = journey_files(targets)
    loaded, problems = load_journeys(files, templates_dir)
    for problem in problems:
        click.echo(str(problem))
    errors = [p for p in problems if p.severity == "error"]
    warnings = len(problems) - len(errors)
    broken = len({p.file for p in errors})
    noun = "journey" if len(files) == 1 else "journeys"
    extra = f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""
    if errors:
        click.echo(
            f"{len(errors)} error{'s' * (len(errors) != 1)} in {broken} file"
            f"{'s' * (broken != 1)}{extra}; {len(loaded)} of {len(files)} {noun} valid",
            err=True,
        )
        raise SystemExit(1)
    click.echo(f"{len(loaded)} {noun} valid{extra}")
