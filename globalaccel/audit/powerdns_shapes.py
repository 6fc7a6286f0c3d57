"""Every live LUA record of a PowerDNS zone must have a shape the compiler writes, or it is a violation.

The latent-path check (powerdns_latent) judges the addresses and names written whole in a record's code.
Code that builds them (`'198.18.'..'50.55'`, or `if c=='ru' then c='sg' end` in the dispatch) hides them
from it, and PowerDNS would run it. So the audit first asks of each owned LUA record whether it is one the
compiler could have written: the dispatch and the shared library are recompiled from what they list and
must come out identical; a cell's or a country's record must be a call of the library with literal data
only (a table of quoted addresses, or of coordinates and cell labels). Anything else is
`record_not_compiled`, a violation: the audit cannot judge what hand-written code may answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from globalaccel.dns.powerdns import LIBRARY, LuaValidationError, PowerDnsLayout, lua_code, lua_dispatch, lua_library
from globalaccel.dns.records import Record
from globalaccel.findings import Finding

_ADDRESS = r"'[0-9A-Fa-f.:]+'"
_LIST = rf"\{{{_ADDRESS}(?:,{_ADDRESS})*\}}"
_PATH = rf"\{{{_ADDRESS},{_LIST}\}}"
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?"
_CELL = rf"\{{{_NUMBER},{_NUMBER},'[a-z0-9-]+'\}}"
_INCLUDE = re.escape(f";include('{LIBRARY}') return ")
SHAPES = {
    "A": (re.compile(rf"{_INCLUDE}gachain\(\{{{_PATH}(?:,{_PATH})*\}}\)"),  # a failover chain
          re.compile(rf";local p=\{{\{{(?:0|{_ADDRESS}),{_LIST}\}}\}} return p\[1\]\[2\]")),  # one path
    "CNAME": (re.compile(rf"{_INCLUDE}gacell\(\{{{_CELL}(?:,{_CELL})*\}},'[a-z0-9-]+'\)"),),  # nearest cell
}


def _code(content: str) -> tuple[str, str] | None:
    try:
        return lua_code(content)
    except LuaValidationError:
        return None


def uncompiled_records(records: Iterable[Record], layout: PowerDnsLayout) -> list[Finding]:
    zone = layout.zone.rstrip(".")
    out: list[Finding] = []
    for record in records:
        if record.type != "LUA" or not layout.owns(record) or record.name == layout.geo_probe:
            continue  # the probe answers the audit where PowerDNS places a network, never a client: a bad one leaves countries unverified
        for content in record.values:
            parsed = _code(content)
            if not _compiled_shape(record.name, parsed, layout, zone):
                out.append(Finding("record_not_compiled", record.name, f"{record.name} holds LUA code the compiler does not "
                                   f"write ({content[:120]!r}...): what it may answer cannot be judged"))
    return out


def _compiled_shape(name: str, parsed: tuple[str, str] | None, layout: PowerDnsLayout, zone: str) -> bool:
    if parsed is None:
        return False
    rtype, code = parsed
    try:
        if name == layout.service:
            listed = [c.upper() for c in re.findall(r"\['([a-z]{2})'\]=1", code)]
            return rtype == "CNAME" and lua_code(lua_dispatch(listed, zone)) == parsed
        if name == f"{LIBRARY}.{layout.zone}":
            url = re.search(r"ifurlup\('([^']*)'", code)
            return rtype == "LUA" and url is not None and lua_code(lua_library(url[1], layout.countries.rstrip("."))) == parsed
    except LuaValidationError:
        return False
    return any(shape.fullmatch(code) for shape in SHAPES.get(rtype, ()))
