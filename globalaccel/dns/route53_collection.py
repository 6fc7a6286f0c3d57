"""The stack's CIDR collection as ChangeCidrCollection requests: from the plan's location pseudo-records
(records.CIDR_TYPE) and the blocks the collection holds live, which blocks leave, move and arrive, in how
many requests, in what order (globalaccel.dns.route53_cells says why the order)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from globalaccel.dns.plan import Changes
from globalaccel.dns.records import CIDR_TYPE
from globalaccel.dns.route53_cells import pseudo_label

MAX_COLLECTION_BLOCKS = 1_000  # "The max number of CIDR blocks included in the request is 1000" (ChangeCidrCollection)


def pack_collection(units: list[list[tuple[str, str, str]]]) -> list[list[dict[str, Any]]]:
    """Units of block changes -> ChangeCidrCollection `Changes` lists of at most MAX_COLLECTION_BLOCKS blocks,
    a unit (a move: leave, arrive) never split; within a request, leaving before arriving."""
    requests: list[list[tuple[str, str, str]]] = []
    current: list[tuple[str, str, str]] = []
    for unit in units:
        if current and len(current) + len(unit) > MAX_COLLECTION_BLOCKS:
            requests.append(current)
            current = []
        current += unit
    if current:
        requests.append(current)
    out = []
    for ops in requests:
        grouped: dict[tuple[str, str], list[str]] = {}
        for action, location, block in ops:
            grouped.setdefault((action, location), []).append(block)
        order = sorted(grouped, key=lambda k: (k[0] != "DELETE_IF_EXISTS", k[1]))
        out.append([{"LocationName": loc, "Action": action, "CidrList": grouped[(action, loc)]} for action, loc in order])
    return out



def new_labels(changes: Changes, location_of_label: Mapping[str, str]) -> set[str]:
    """Labels of locations the plan creates (no live blocks)."""
    return {pseudo_label(c.record.name) for c in changes.all
            if c.record.type == CIDR_TYPE and c.action != "DELETE" and pseudo_label(c.record.name) not in location_of_label}

def collection_requests(changes: Changes, live_blocks: Mapping[str, set[str]], location_of_label: Mapping[str, str]
                        ) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
    """ChangeCidrCollection requests for the plan's location changes: (early, arriving).

    Early: blocks leaving a location (for another location, or for none, the location staying or going),
    and blocks added to locations that exist. Arriving: blocks added to locations that do not exist yet.
    A block moving between locations leaves and arrives in the same request (one transaction, as AWS
    documents moves). At most MAX_COLLECTION_BLOCKS blocks per request."""
    want: dict[str, set[str]] = {}
    gone: set[str] = set()
    for c in changes.all:
        if c.record.type != CIDR_TYPE:
            continue
        label = pseudo_label(c.record.name)
        location = location_of_label.get(label, label)
        if c.action == "DELETE":
            gone.add(location)
        else:
            want[location] = set(c.record.values)
    home = {b: loc for loc, blocks in live_blocks.items() for b in blocks}
    early: list[list[tuple[str, str, str]]] = []  # [(action, location, block)], never split across requests
    arriving: list[list[tuple[str, str, str]]] = []
    moving: set[str] = set()
    for location in sorted(want):
        have = live_blocks.get(location, set())
        for block in sorted(want[location] - have):
            unit = [("PUT", location, block)]
            if block in home and home[block] != location:
                unit.insert(0, ("DELETE_IF_EXISTS", home[block], block))
                moving.add(block)
            (early if location in live_blocks else arriving).append(unit)
        early += [[("DELETE_IF_EXISTS", location, b)] for b in sorted(have - want[location])
                  if not any(b in want[o] for o in want if o != location)]
    early += [[("DELETE_IF_EXISTS", location, b)] for location in sorted(gone) for b in sorted(live_blocks.get(location, ()))
              if b not in moving]
    return pack_collection(early), pack_collection(arriving)
