"""PowerDNS per client cell: a country of several cells sends each client to its nearest cell's name.

    _lib.cc.<zone>          LUA  LUA   (the zone's shared functions: powerdns.lua_library)
    de.cc.<zone>            LUA  CNAME ";include('_lib.cc') return gacell({{52.5244,13.4105,'de-2950159'},...},'<principal>')"
    de-2950159.cc.<zone>    LUA  A     (the cell's answer and failover chain: powerdns.lua_for_country)
    de-2867714.cc.<zone>    TXT        (a cell without an answer: NODATA)

PowerDNS's geoip backend, given the same city-level database as the stack's `cells.networks`, gives the
client network's coordinates (`latlon()`, from the ECS address when the query has one). The snippet places
them in the nearest cell of the country by great-circle distance, as globalaccel.locate places a
database record (unit vectors, largest dot product, the first cell in the stack's order winning a tie),
so PowerDNS and the embedded server answer a network for the same cell. A network with no coordinates
(PowerDNS then says "0.000000 0.000000") is answered for the country's principal cell, as the locator
does. The snippet depends only on where the cells are: a routing change rewrites a cell's record, never
this one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from globalaccel.cells import Cell
from globalaccel.dns.powerdns_lua import LIBRARY, LuaValidationError, lua_record

CELL_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def cell_label(cell_id: str) -> str:
    """The cell's DNS label: its id, which must already be one (lowercase letters, digits, hyphens)."""
    if CELL_LABEL.fullmatch(cell_id) is None:
        raise LuaValidationError(f"cell id {cell_id!r} is not a DNS label; PowerDNS names each cell by its id")
    return cell_id


def lua_nearest_cell(cells: Sequence[Cell], principal: str) -> str:
    """The LUA CNAME of a country of several cells: the zone's `gacell` (powerdns.lua_library) over the
    country's cells in the stack's order (ties go to the first)."""
    listed = ",".join(f"{{{c.lat!r},{c.lon!r},'{cell_label(c.id)}'}}" for c in cells)
    return lua_record("CNAME", f";include('{LIBRARY}') return gacell({{{listed}}},'{cell_label(principal)}')")
