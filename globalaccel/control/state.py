"""Persisted loop state and local leadership.

State (health, router hysteresis, last table) is written atomically (temp file + rename) after every
cycle and read at start, so a restarted loop neither flaps routes nor starts with everything unknown.
Leadership locally is an exclusive `flock` on `leader.lock` in the state folder: only the holder
writes DNS. In a cluster the loop uses a Kubernetes Lease instead (globalaccel.control.lease).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

from globalaccel.errors import GlobalaccelError
from globalaccel.routing.table import RouterState


class StateError(GlobalaccelError):
    """The loop's state folder cannot be used as it is (exit 2): the message says which file and what to do."""


class StateStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "state.json"

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
            return data
        except json.JSONDecodeError as exc:
            raise StateError(f"{self.path}: state file is corrupt ({exc.msg} at line {exc.lineno}); move it aside to start fresh") from exc

    def router_state(self, data: dict[str, Any]) -> RouterState:
        """The router's hysteresis memory in loaded state `data`, or a StateError naming this file."""
        try:
            return RouterState.from_json(data["router"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{self.path}: router state is invalid ({exc}); move the file aside to start fresh") from exc

    def save(self, state: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(state, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


class FileLease:
    """Non-blocking exclusive lock: `acquire()` is True for exactly one process at a time."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "leader.lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> bool:
        if self._fh is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None
