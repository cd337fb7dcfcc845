"""YAML loading that remembers where every key and value came from (1-based line:column)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Document",
    "Location",
    "Path_",
    "YamlError",
    "child",
    "is_absent",
    "load_yaml",
    "parse_yaml",
]

#: Files people edit are small; larger ones are refused before parsing.
MAX_FILE_CHARS = 1_000_000
#: Values a file may expand to (aliases count each time they are used): no billion laughs.
MAX_VALUES = 100_000
#: Nesting a file may have.
MAX_DEPTH = 64

#: A position inside the loaded data: mapping keys and sequence indexes.
Path_ = tuple[str | int, ...]

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$")
_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$")


class _JourneyLoader(yaml.SafeLoader):
    """YAML 1.2 core scalars only.

    YAML 1.1 turns ``10:30`` into 630, ``no`` into False and ``2026-01-01`` into
    a date; marketers write times, country codes and dates as they read, so only
    true/false, null, integers and decimals are typed and everything else stays text.
    """


_JourneyLoader.yaml_implicit_resolvers = {}
for _tag, _regex, _first in (
    ("tag:yaml.org,2002:bool", _BOOL, list("tTfF")),
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", _INT, list("-+0123456789")),
    ("tag:yaml.org,2002:float", _FLOAT, list("-+.0123456789")),
):
    _JourneyLoader.add_implicit_resolver(_tag, _regex, _first)


@dataclass(frozen=True)
class Location:
    """A 1-based line and column in a file."""

    line: int
    column: int


class YamlError(Exception):
    """The file is not well-formed YAML for a journey; carries where and why."""

    def __init__(self, message: str, location: Location, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint


@dataclass
class Document:
    """Plain data loaded from YAML plus where each value and key started."""

    data: Any
    values: dict[Path_, Location] = field(default_factory=dict)
    keys: dict[Path_, Location] = field(default_factory=dict)
    text: str = field(default="", repr=False)
    #: Values left to convert before the file counts as an alias bomb.
    budget: int = field(default=0, repr=False)

    def value_start(self, path: Path_) -> Location:
        """Where the text of a scalar starts, inside its quotes if it has them."""
        where = self.locate(path)
        lines = self.text.splitlines()
        line = lines[where.line - 1] if where.line <= len(lines) else ""
        quoted = line[where.column - 1 : where.column] in ("'", '"')
        return Location(where.line, where.column + int(quoted))

    def locate(self, path: Path_, *, key: bool = False) -> Location:
        """The location of the deepest node that ``path`` reaches.

        pydantic puts union tags (``award_points``, ``field``) into error paths;
        they are not keys of the data, so segments may be skipped. The reading
        that matches the most segments wins, and on a tie the one that matches
        the later segments (the tag comes before the keys inside the model).
        """
        found = _match(self.data, tuple(path), 0)
        best = found[2]
        if key and best and best in self.keys:
            return self.keys[best]
        return self.values.get(best, Location(1, 1))

    def exists(self, path: Path_) -> bool:
        """Whether every segment of ``path`` is present in the data."""
        node: Any = self.data
        for segment in path:
            node = child(node, segment)
            if node is _ABSENT:
                return False
        return True


_ABSENT = object()


def child(node: Any, segment: str | int) -> Any:
    """``node[segment]`` for a mapping key or list index that exists, else a sentinel."""
    if isinstance(node, dict) and isinstance(segment, str) and segment in node:
        return node[segment]
    if isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node):
        return node[segment]
    return _ABSENT


def is_absent(value: Any) -> bool:
    """Whether ``child`` found nothing."""
    return value is _ABSENT


def _match(node: Any, path: Path_, start: int) -> tuple[int, int, Path_]:
    """(segments matched, index of the last matched segment, matched data path)."""
    best: tuple[int, int, Path_] = (0, -1, ())
    for i in range(start, len(path)):
        segment = path[i]
        inner = child(node, segment)
        if inner is _ABSENT:
            continue
        count, last, sub = _match(inner, path, i + 1)
        candidate = (count + 1, max(last, i), (segment, *sub))
        if candidate[:2] > best[:2]:
            best = candidate
    return best


def _where(mark: yaml.Mark | None) -> Location:
    return Location(mark.line + 1, mark.column + 1) if mark else Location(1, 1)


def _scalar(node: yaml.ScalarNode) -> Any:
    tag, text = node.tag, node.value
    if tag == "tag:yaml.org,2002:str":
        return text
    if tag == "tag:yaml.org,2002:bool":
        return text.lower() == "true"
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:int":
        return int(text.replace("_", ""))
    if tag == "tag:yaml.org,2002:float":
        return float(text.replace("_", ""))
    raise YamlError(
        f"unsupported YAML tag {tag}",
        _where(node.start_mark),
        "remove the tag; journeys use plain text, numbers, true/false, lists and mappings",
    )


def _convert(node: yaml.Node, path: Path_, doc: Document, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise YamlError(
            f"the file nests deeper than {MAX_DEPTH} levels",
            _where(node.start_mark),
            "flatten the structure",
        )
    doc.budget -= 1
    if doc.budget < 0:
        raise YamlError(
            f"the file expands to more than {MAX_VALUES:,} values",
            _where(node.start_mark),
            "YAML aliases (*name) that repeat large parts are refused; write the values out",
        )
    doc.values[path] = _where(node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc, depth + 1) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if (
                not isinstance(key_node, yaml.ScalarNode)
                or key_node.tag == "tag:yaml.org,2002:merge"
            ):
                raise YamlError(
                    "keys must be plain names", _where(key_node.start_mark), "write `name: value`"
                )
            key = str(_scalar(key_node))
            if key in out:
                first = doc.keys[(*path, key)]
                raise YamlError(
                    f"duplicate key `{key}` (first at line {first.line})",
                    _where(key_node.start_mark),
                    "keep one of them",
                )
            doc.keys[(*path, key)] = _where(key_node.start_mark)
            out[key] = _convert(value_node, (*path, key), doc, depth + 1)
        return out
    raise YamlError("unsupported YAML node", _where(node.start_mark), "")  # pragma: no cover


def parse_yaml(text: str, name: str = "<string>") -> Document:
    """Parse one YAML document into plain data with locations; raise YamlError."""
    if len(text) > MAX_FILE_CHARS:
        raise YamlError(
            f"the file is larger than {MAX_FILE_CHARS:,} characters",
            Location(1, 1),
            "split it into smaller files",
        )
    try:
        root = yaml.compose(text, Loader=_JourneyLoader)
    except RecursionError:
        raise YamlError(
            "the file nests too deeply to read", Location(1, 1), "flatten the structure"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or "invalid YAML"
        if exc.context and exc.problem:
            message = f"{exc.context}, {exc.problem}"
        raise YamlError(
            f"invalid YAML: {message}",
            _where(mark),
            "check the indentation and quoting around this spot",
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}", Location(1, 1), "") from None
    doc = Document(data=None, text=text, budget=MAX_VALUES)
    if root is None:
        return doc
    doc.data = _convert(root, (), doc)
    return doc


def load_yaml(path: Path) -> Document:
    """Read and parse ``path``; raise YamlError (also for unreadable or non-UTF-8 files)."""
    try:
        if path.stat().st_size > MAX_FILE_CHARS * 4:  # refuse before reading a huge file
            raise YamlError(
                f"the file is larger than {MAX_FILE_CHARS:,} characters",
                Location(1, 1),
                "split it into smaller files",
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlError(f"cannot read the file: {exc}", Location(1, 1), "") from None
    return parse_yaml(text, str(path))
