"""YAML with line numbers, so a bad strategy file is reported as ``file:line: what is wrong``.

Strategy teams edit ``conf/segments.yaml``, ``conf/policy.yaml`` and ``conf/compliance.yaml`` by
hand. A validation error that only says "unknown action 'cal'" sends them searching; one that
says ``conf/policy.yaml:42: unknown action 'cal'`` does not. The parser here builds ordinary
dicts and lists that also remember the (1-based) line each mapping, key and list item started on.

Parsing takes text and a source name (the file path, used only in messages), so it does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time
from pathlib import Path
from typing import Any

import yaml

from rollrisk.errors import UserError


class ConfigError(UserError):
    """A strategy configuration file is invalid; the message starts with ``file:line:``."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        self.source = source
        self.line = line
        self.detail = message
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class LineDict(dict):
    """A mapping from YAML that knows the line it and each of its keys started on."""

    line: int | None = None
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int | None:
        """Line of ``key`` if it is present, else the line of the mapping itself."""
        return getattr(self, "key_lines", {}).get(key, self.line)


class LineList(list):
    """A sequence from YAML that knows the line it and each of its items started on."""

    line: int | None = None
    item_lines: list[int]

    def line_of(self, index: int) -> int | None:
        lines = getattr(self, "item_lines", [])
        return lines[index] if 0 <= index < len(lines) else self.line


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry their source lines."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


class ClockText(str):
    """An unquoted ``8:00``: YAML 1.1 reads it as the sexagesimal integer 480; kept as the text
    written, so that a time of day (:func:`parse_time_of_day`) is told from a bare number."""


def _construct_int(loader: _LineLoader, node: yaml.ScalarNode) -> Any:
    if ":" in str(node.value):
        return ClockText(node.value)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    # `<<: *defaults` pairs are put first by flatten_mapping; a key written here may override
    # one of them (what a merge is for), but a key written twice here is refused
    own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
    loader.flatten_mapping(node)
    merged = getattr(node, "merged_pairs", None)
    if merged is None:  # the first flattening knows; a later one finds nothing left to merge
        merged = node.merged_pairs = len(node.value) - own
    mapping = LineDict()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    written: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:  # `[a, b]: 1`: a list or a mapping as a key
            raise ConfigError(
                str(node.start_mark.name),
                line,
                f"a key must be a single value, got {describe_value(key)}",
            ) from None
        if key in written:  # last-wins would silently drop the first value
            raise ConfigError(
                str(node.start_mark.name),
                line,
                f"duplicate key {key!r} (already given on line {mapping.key_lines[key]})",
            )
        if index >= merged:
            written.add(key)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    sequence = LineList(loader.construct_object(child, deep=True) for child in node.value)
    sequence.line = node.start_mark.line + 1
    sequence.item_lines = [child.start_mark.line + 1 for child in node.value]
    return sequence


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def read_yaml_text(path: str | Path, what: str = "file") -> str:
    """The text of a YAML file a user named, or a one-line error naming ``what`` and the file.

    Every YAML the jobs read (``--config``, ``--policy``, ``--segments``, ``--compliance``)
    comes through here, so a folder, a missing file or bytes that are not UTF-8 (a binary file,
    a spreadsheet saved as Latin-1) are reported the same way everywhere, never as a codec
    traceback. Other read failures (permissions, I/O) stay ``OSError`` for the CLI to report.

    Raises:
        UserError: the path is a folder, does not exist (a broken link included) or its bytes
            are not UTF-8.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder, not a file")
    if not path.exists():
        broken = " (a broken or looping link)" if path.is_symlink() else ""
        raise UserError(f"{what} {path} does not exist{broken}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{what} {path} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
            f"{error.start}); save it as UTF-8"
        ) from None


def describe_value(value: Any) -> str:
    """A YAML value as a message says what was found: ``the number 0``, ``an empty list``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' * (len(value) != 1)}" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} ({value!r})"


def parse_yaml_with_lines(text: str, source: str, *, empty_ok: bool = False) -> LineDict:
    """Parse one YAML document whose top level must be a mapping.

    ``empty_ok``: an empty document (nothing but blank lines and comments) is an empty mapping
    rather than an error.

    Raises :class:`ConfigError` naming ``source`` and the line for syntax errors, duplicate keys
    (at any depth) and a top level that is not a mapping.
    """
    loader = _LineLoader(text)
    loader.name = source
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(source, line, f"not valid YAML: {error.problem}") from error
    except ConfigError as error:
        raise ConfigError(source, error.line, error.detail) from error
    finally:
        loader.dispose()
    if document is None and empty_ok:
        document = LineDict()
        document.line, document.key_lines = 1, {}
    if not isinstance(document, LineDict):
        found = "an empty file" if document is None else describe_value(document)
        raise ConfigError(
            source, 1, f"the top level must be a mapping of keys to values, got {found}"
        )
    return document


def line_of(container: Any, key: Any) -> int | None:
    """Line of ``key`` (dict key or list index) inside ``container``, when it is known."""
    if isinstance(container, LineDict | LineList):
        return container.line_of(key)
    return None


def require_keys(
    mapping: Any,
    source: str,
    what: str,
    required: Iterable[str],
    optional: Iterable[str] = (),
    line: int | None = None,
) -> LineDict:
    """Check that ``mapping`` is a mapping with all ``required`` keys and no unknown ones."""
    if not isinstance(mapping, dict):
        raise ConfigError(source, line, f"{what} must be a mapping, got {type(mapping).__name__}")
    required = tuple(required)
    allowed = set(required) | set(optional)
    here = mapping.line if isinstance(mapping, LineDict) else line
    for key in mapping:
        if key not in allowed:
            raise ConfigError(
                source,
                line_of(mapping, key),
                f"unknown key {key!r} in {what}; allowed keys: {', '.join(sorted(allowed))}",
            )
    for key in required:
        if key not in mapping:
            raise ConfigError(source, here, f"{what} is missing the required key {key!r}")
    return mapping  # type: ignore[return-value]


def parse_time_of_day(value: Any, source: str, line: int | None) -> time:
    """A local time of day written ``"HH:MM"``.

    An unquoted ``8:00`` (:class:`ClockText`, which YAML 1.1 reads as a number) is accepted
    too; a bare number is refused: ``8`` or ``15`` read as minutes after midnight opened the
    contact window at 00:08.
    """
    if isinstance(value, ClockText):
        hours, _, minutes = value.partition(":")
        value = f"{hours.zfill(2)}:{minutes}"
    elif isinstance(value, int | float) and not isinstance(value, bool):
        raise ConfigError(
            source,
            line,
            f'a time of day must be "HH:MM" (e.g. "08:00"), got the number {value!r}',
        )
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(source, line, f"a time of day must be HH:MM, got {value!r}") from None
