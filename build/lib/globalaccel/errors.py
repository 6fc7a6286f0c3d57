"""Errors: one base carrying its exit status, and config errors that name file, line and field.

Every error meant for the operator derives from `GlobalaccelError`; the command line maps it to its
`exit_code` in one place (`globalaccel.cli.main`). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class GlobalaccelError(Exception):
    """An error the operator can act on. `exit_code` 2: the command could not do its job."""

    exit_code = 2
    prefix = "globalaccel"

    def render(self) -> str:
        return f"{self.prefix}: {self}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input, located precisely enough to fix it."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}"


class ConfigError(GlobalaccelError):
    """Raised when input files are invalid. Carries every problem found, not just the first,
    so an operator fixes a catalog in one pass; nothing partially loaded escapes."""

    def render(self) -> str:
        return f"{self.prefix}: invalid configuration:\n{self}"

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems = list(problems)
        head = "\n".join(str(p) for p in self.problems[:50])
        more = len(self.problems) - 50
        if more > 0:
            head += f"\n... and {more} more problems"
        super().__init__(head)

    @classmethod
    def single(cls, file: str | Path, line: int | None, field: str, message: str) -> ConfigError:
        return cls([Problem(str(file), line, field, message)])


class UsageError(GlobalaccelError):
    """Options that do not fit together (named by their flags)."""


class ProblemCollector:
    """Accumulates problems while validating; `raise_if_any` ends validation."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, file: str | Path, line: int | None, field: str, message: str) -> None:
        self.problems.append(Problem(str(file), line, field, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)
