"""PowerDNS LUA records: how code is stored (255-byte AXFR-safe segments), checked (LuaJIT), and the
snippets the compiler writes: the zone's shared library, a failover chain, the country dispatch."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping

from globalaccel.errors import GlobalaccelError

SEGMENT = 255  # bytes per quoted string of a LUA record (AXFR carries record data as TXT-like strings)


class LuaValidationError(GlobalaccelError, ValueError):
    pass


def lua_code(content: str) -> tuple[str, str]:
    """A LUA record's (type, code): the code is the concatenation of its quoted segments."""
    rtype, _, body = content.partition(" ")
    if not rtype or re.fullmatch(r'"[^"]*"(?: "[^"]*")*', body) is None:
        raise LuaValidationError(f"LUA record content must be '<TYPE> \"<lua>\"[ \"<lua>\"...]', got {content[:60]!r}")
    segments: list[str] = re.findall(r'"([^"]*)"', body)
    # The cuts lua_record made (" --[[" closing a segment, "]]" opening the next) come out again.
    for i in range(len(segments) - 1):
        if segments[i].endswith(" --[[") and segments[i + 1].startswith("]]"):
            segments[i], segments[i + 1] = segments[i][: -len(" --[[")], segments[i + 1][len("]]"):]
    return rtype, "".join(segments)


def lua_record(rtype: str, code: str) -> str:
    """`rtype "<code>"`, the code stored in quoted segments of at most 255 bytes (AXFR-safe). PowerDNS
    does not join segments back seamlessly (a cut inside a token or a string literal breaks the code),
    so cuts fall only after a comma or space outside string literals, and each cut sits inside a Lua
    long comment (`--[[` ... `]]`), where whatever the join inserts is inert."""
    if '"' in code:
        raise LuaValidationError("the Lua snippet must not contain double quotes (the record data is a quoted string)")
    cuts, quoted = [], False
    for i, ch in enumerate(code):
        if ch == "'":
            quoted = not quoted
        elif ch in ", " and not quoted:
            cuts.append(i + 1)
    segments: list[str] = []
    start, room = 0, SEGMENT - len(" --[[")
    while len(code) - start > SEGMENT - len("]]"):
        limit = start + room - (len("]]") if segments else 0)
        end = max((c for c in cuts if start < c <= limit), default=None)
        if end is None:
            raise LuaValidationError(f"cannot cut the Lua snippet into {SEGMENT}-byte segments near byte {start}")
        segments.append(("]]" if segments else "") + code[start:end] + " --[[")
        start = end
    segments.append(("]]" if segments else "") + code[start:])
    return f"{rtype} " + " ".join(f'"{segment}"' for segment in segments)


@functools.lru_cache(maxsize=16384)  # a table change rewrites a few cells' records; the rest compiled before
def validate_lua(content: str) -> None:
    """Compile a LUA record's snippet with LuaJIT; raise LuaValidationError with the parser's message."""
    from lupa import luajit21

    rtype, code = lua_code(content)
    # A record's snippet is an expression, or statements after ';'; the shared library (type LUA) is statements.
    chunk = code if rtype == "LUA" else code[1:] if code.startswith(";") else f"return {code}"
    runtime = luajit21.LuaRuntime(register_eval=False)
    error = runtime.eval("function(src) local f, err = loadstring(src) return err end")(chunk)
    if error is not None:
        raise LuaValidationError(f"Lua does not compile: {error}")


def canonical_address(address: str, what: str) -> str:
    """The address as PowerDNS writes it back (ifurlup returns addresses in canonical form, so the snippet
    compares canonical forms); anything but an IP address is refused before it reaches Lua."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise LuaValidationError(f"refusing to embed {what} {address!r} in Lua: not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip.scope_id is not None):
        # PowerDNS spells these differently from Python: the snippet's comparison would never match.
        raise LuaValidationError(f"refusing {what} {address!r}: use a plain IPv4 or IPv6 address (no IPv4-mapped or scoped form)")
    return str(ip)


LIBRARY = "_lib.cc"  # the zone's shared Lua (relative to the zone, as include() takes it)


def lua_library(health_url: str, parent: str) -> str:
    """The zone's shared functions, one LUA record that every chain and every nearest-cell record
    include()s: keeping that code out of 3,000+ cell records keeps them small, which AXFR needs (PowerDNS
    4.7 packs 100 records into one transfer message, which must stay under 65,535 bytes).

    gachain(p): p = the paths in failover order, {health address, {answer addresses}}. It asks
    `ifurlup(health_url, {{center1},{center2},..})` for the first set with a live center. With
    backupSelector 'all', a lookup where none is live (or PowerDNS has no verdict yet) returns every
    set's address, so one address back means "this center is the first live one" and anything else
    means the chosen path.

    gacell(c, principal): c = the country's cells {lat, lon, label} in the stack's order; the client's
    nearest cell's name (globalaccel.dns.powerdns_cells)."""
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+:[0-9]+/[A-Za-z0-9/_.-]*", health_url):
        raise LuaValidationError(f"a failover chain needs a health URL of the form scheme://name:port/path; got {health_url!r}")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", parent):
        raise LuaValidationError(f"refusing to embed name {parent!r} in Lua")
    return lua_record("LUA", (
        "function gachain(p) local s={} for i,x in ipairs(p) do s[i]={x[1]} end "
        f"local u=ifurlup('{health_url}',s,{{backupSelector='all'}}) "
        "if #u==1 then for _,x in ipairs(p) do if x[1]==u[1] then return x[2] end end end return p[1][2] end "
        "function gacell(c,principal) "
        "local a,b=string.match(latlon() or '','^(%S+) (%S+)$') a=tonumber(a) b=tonumber(b) "
        f"if a==nil or b==nil or (a==0 and b==0) then return principal..'.{parent}' end "
        "local r,cs,sn=math.rad,math.cos,math.sin "
        "local x,y,z=cs(r(a))*cs(r(b)),cs(r(a))*sn(r(b)),sn(r(a)) "
        "local best,top=c[1][3],-2 "
        "for _,e in ipairs(c) do local p,q=r(e[1]),r(e[2]) "
        "local d=cs(p)*cs(q)*x+cs(p)*sn(q)*y+sn(p)*z if d>top then top=d best=e[3] end end "
        f"return best..'.{parent}' end"))


def lua_for_country(paths: tuple[tuple[str | None, tuple[str, ...]], ...]) -> str:
    """One country's (or cell's) answer: its paths in failover order as (health address of the path's
    center, answer addresses). A chain of one path answers it as is; a longer one calls the zone's
    `gachain` (lua_library), which answers the first path with a live center."""
    if not paths:
        raise LuaValidationError("a served country needs at least one path")
    parts = []
    for health, addresses in paths:
        listed = "{" + ",".join(repr(canonical_address(a, "answer address")) for a in addresses) + "}"
        parts.append(f"{{{canonical_address(health, 'health address')!r},{listed}}}" if health is not None else f"{{0,{listed}}}")
    if len(paths) == 1:
        return lua_record("A", f";local p={{{','.join(parts)}}} return p[1][2]")
    if any(h is None for h, _ in paths):
        raise LuaValidationError("a failover chain needs every center's health address")
    return lua_record("A", f";include('{LIBRARY}') return gachain({{{','.join(parts)}}})")


def lua_for_answers(answers: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """One path per country, no failover in the data plane: country -> its record's content."""
    return {code: lua_for_country(((None, addresses),)) for code, addresses in answers.items()}


def lua_dispatch(served: list[str], zone: str) -> str:
    """The service name's LUA CNAME: a served country's own name, else `none` (no address)."""
    for code in served:
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise LuaValidationError(f"refusing to embed country code {code!r} in Lua")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", zone):
        raise LuaValidationError(f"refusing to embed zone {zone!r} in Lua")
    # Bracketed keys: several country codes are Lua keywords (do, in, or, if).
    listed = ",".join(f"['{code.lower()}']=1" for code in sorted(served))
    # PowerDNS scopes a LUA answer to the query's source prefix, not to the GeoIP block it decided on: a
    # resolver sending a /16 would cache one country's answer for every /24 inside it, another country's
    # clients included. Source prefixes shorter than /24 (IPv4) or /48 (IPv6) get no address (resolvers
    # send /24 and /56 by default); the embedded server, which knows its ranges, scopes them instead.
    coarse = ("ecswho ~= nil and ((ecswho:isIPv4() and ecswho:getBits() < 24) or (ecswho:isIPv6() and ecswho:getBits() < 48))")
    return lua_record("CNAME", f";if {coarse} then return 'none.cc.{zone}' end local s={{{listed}}} local c=countryCode() "
                               f"if s[c] then return c..'.cc.{zone}' end return 'none.cc.{zone}'")
