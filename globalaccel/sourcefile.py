"""Read YAML and CSV while remembering where every value came from.

Validation errors must name the file, line and field; PyYAML's plain `safe_load` forgets the line
numbers, so we compose the node graph and keep each value's line beside it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from globalaccel.errors import ConfigError


@dataclass(frozen=True)
class Located:
    """A YAML value plus the 1-based line it starts on. Mappings and sequences hold Located children."""

    value: Any
    line: int

    def get(self, key: str) -> Located | None:
        if not isinstance(self.value, dict):
            return None
        found = self.value.get(key)
        return found if isinstance(found, Located) else None

    def plain(self) -> Any:
        """The value with all location wrappers removed."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def _convert(node: yaml.Node, loader: yaml.SafeLoader, file: Path) -> Located:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Located] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConfigError.single(file, key_node.start_mark.line + 1, str(key), "mapping keys must be strings")
            if key in out:
                raise ConfigError.single(file, key_node.start_mark.line + 1, key, "duplicate key")
            out[key] = _convert(value_node, loader, file)
        return Located(out, line)
    if isinstance(node, yaml.SequenceNode):
        return Located([_convert(item, loader, file) for item in node.value], line)
    try:
        return Located(loader.construct_object(node, deep=True), line)
    except ValueError:
        # A scalar YAML resolves to a type it cannot build (`2026-13-01` looks like a date): keep the text,
        # so the field's validator names the file, line and field instead of a traceback.
        return Located(str(node.value), line)


def load_yaml(path: Path) -> Located:
    """Parse a YAML file into Located values; syntax errors become ConfigError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError.single(path, None, "file", f"cannot read: {exc.strerror or exc}") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError.single(path, 1, "document", "file is empty")
        return _convert(node, loader, path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError.single(path, line, "yaml", f"syntax error: {exc.problem or exc}") from exc
    finally:
        loader.dispose()


@dataclass(frozen=True)
class CsvRow:
    """One CSV data row with the physical line it started on (header is line 1)."""

    line: int
    fields: dict[str, str]


def read_csv(path: Path, required: tuple[str, ...]) -> Iterator[CsvRow]:
    """Yield rows of a CSV file with a header; lines starting with '#' are comments."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise ConfigError.single(path, None, "file", f"cannot read: {exc.strerror or exc}") from exc
    with handle:
        # Skip leading comment lines but keep counting physical lines for error messages.
        lines = handle.read().splitlines()
    numbered = [(i + 1, text) for i, text in enumerate(lines) if text.strip() and not text.lstrip().startswith("#")]
    if not numbered:
        raise ConfigError.single(path, None, "header", "file has no header row")
    header_line, header_text = numbered[0]
    header = next(csv.reader([header_text]))
    missing = [name for name in required if name not in header]
    if missing:
        raise ConfigError.single(path, header_line, "header", f"missing columns: {', '.join(missing)}")
    for line_no, text in numbered[1:]:
        values = next(csv.reader([text]))
        if len(values) != len(header):
            raise ConfigError.single(path, line_no, "row", f"expected {len(header)} columns, found {len(values)}")
        yield CsvRow(line_no, dict(zip(header, values, strict=True)))
