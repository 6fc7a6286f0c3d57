"""Which records the controller owns, and the registry record that claims a zone for one stack.

Shared by every DNS backend: a `_globalaccel-owner.<zone>` TXT record names the stack that owns the
zone, and a controller refuses to change a zone another stack has claimed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from globalaccel.dns.records import Record
from globalaccel.errors import GlobalaccelError

OWNER_LABEL = "_globalaccel-owner"
ANCHOR_LABEL = "_globalaccel-log"  # the decision log's head, published with every table: anchored outside the log


class ZoneOwnedByAnother(GlobalaccelError):
    pass


@dataclass(frozen=True)
class ZoneOwnership:
    zone: str  # absolute
    service: str  # absolute
    stack: str

    @property
    def owner_name(self) -> str:
        return f"{OWNER_LABEL}.{self.zone}"

    @property
    def anchor_name(self) -> str:
        return f"{ANCHOR_LABEL}.{self.zone}"

    @property
    def owner_value(self) -> str:
        return f'"heritage=globalaccel,owner={self.stack}"'

    def check_owner(self, current: Iterable[Record]) -> None:
        for r in current:
            if r.name == self.owner_name and r.values != (self.owner_value,):
                raise ZoneOwnedByAnother(f"zone {self.zone} is owned by {r.values}; refusing to change it")
