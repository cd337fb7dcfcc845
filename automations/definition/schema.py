"""JSON Schema of journey files, generated from the models, for editor autocompletion.

Regenerate with ``python -m automations.definition.schema`` (writes journeys/schema.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .models import Journey

__all__ = ["SCHEMA_PATH", "journey_schema", "render_schema"]

#: Where the committed schema lives, relative to the project root.
SCHEMA_PATH = Path("journeys") / "schema.json"


def journey_schema() -> dict[str, Any]:
    """The JSON Schema of one journey file."""
    schema = Journey.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Journey",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def render_schema() -> str:
    """The schema as the committed file's text (stable key order, trailing newline)."""
    return json.dumps(journey_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema to the path given, or to journeys/schema.json."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else SCHEMA_PATH
    target.write_text(render_schema(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
