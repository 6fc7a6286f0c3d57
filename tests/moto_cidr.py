"""moto_server with Route 53 CIDR collections: a TEST DOUBLE for storage, because moto 5.2.5 has none.

    python -m tests.moto_cidr -H 127.0.0.1 -p PORT     (the same arguments as moto_server)

moto answers 404 to every CIDR collection operation and drops `CidrRoutingConfig` from the records it
stores. This module adds, before moto's server starts:
- records keep `CidrRoutingConfig` as sent, and list it back (moto's own serializer, from botocore's model);
- CreateCidrCollection, ListCidrCollections, ChangeCidrCollection, ListCidrBlocks, ListCidrLocations and
  DeleteCidrCollection on an in-memory store, routed by botocore's service model as moto routes the rest.

It STORES; it evaluates nothing (which answer a client gets is AWS's, read from its documentation:
globalaccel.dns.route53_sim). What it refuses is only what AWS documents refusing (API reference,
ChangeCidrCollection / CreateCidrCollection / DeleteCidrCollection, checked 2026-11-26): more than 1,000
blocks in one request, blocks outside IPv4 /1-/24 and IPv6 /1-/48 (Developer Guide, IP-based routing), a
version mismatch when CollectionVersion is given, a second collection of one name, deleting a collection
that is not empty. One rule is our stricter reading, said as such: a block already in another location of
the collection is refused (CidrBlockInUseException: "This CIDR block is already in use"; AWS does not say
when it fires), so that a move must leave and arrive in one request, as AWS documents moves.
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import moto.route53.models as models
import moto.route53.responses as responses
import moto.route53.urls as urls
from moto.core.responses import ActionResult
from moto.route53.exceptions import Route53ClientError

MAX_REQUEST_BLOCKS = 1_000
MAX_PREFIX = {4: 24, 6: 48}


class CidrError(Route53ClientError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


def _store(backend: Any) -> dict[str, dict[str, Any]]:
    if not hasattr(backend, "cidr_collections"):
        backend.cidr_collections = {}
    store: dict[str, dict[str, Any]] = backend.cidr_collections
    return store


def _collection(backend: Any, collection_id: str) -> dict[str, Any]:
    found = _store(backend).get(collection_id)
    if found is None:
        raise CidrError("NoSuchCidrCollectionException", "The CIDR collection you specified, doesn't exist.")
    return found


def _summary(c: dict[str, Any]) -> dict[str, Any]:
    return {"Arn": f"arn:aws:route53:::cidrcollection/{c['Id']}", "Id": c["Id"], "Name": c["Name"], "Version": c["Version"]}


def create_cidr_collection(self: Any) -> ActionResult:
    name = self._get_param("Name")
    store = _store(self.backend)
    if any(c["Name"] == name for c in store.values()):
        raise CidrError("CidrCollectionAlreadyExistsException", f"A CIDR collection with the name {name} already exists.")
    collection = {"Id": str(uuid.uuid4()), "Name": name, "Version": 1, "Locations": {}}
    store[collection["Id"]] = collection
    return ActionResult({"Collection": _summary(collection), "Location": f"/2013-04-01/cidrcollection/{collection['Id']}"})


def list_cidr_collections(self: Any) -> ActionResult:
    return ActionResult({"CidrCollections": [_summary(c) for c in _store(self.backend).values()]})


def change_cidr_collection(self: Any) -> ActionResult:
    collection = _collection(self.backend, self._get_param("Id"))
    version = self._get_param("CollectionVersion")
    if version is not None and int(version) != collection["Version"]:
        raise CidrError("CidrCollectionVersionMismatchException", "The CIDR collection version you provided, doesn't match the one "
                        "in the ListCidrCollections operation.")
    changes = self._get_param("Changes") or []
    if sum(len(c.get("CidrList") or []) for c in changes) > MAX_REQUEST_BLOCKS:
        raise CidrError("LimitsExceededException", f"The max number of CIDR blocks included in the request is {MAX_REQUEST_BLOCKS}.")
    locations = {name: set(blocks) for name, blocks in collection["Locations"].items()}
    for change in changes:
        name, action = change["LocationName"], change["Action"]
        for text in change["CidrList"]:
            try:
                network = ipaddress.ip_network(text)
            except ValueError:
                raise CidrError("InvalidInput", f"Invalid CIDR block: {text}") from None
            if not 1 <= network.prefixlen <= MAX_PREFIX[network.version]:
                raise CidrError("InvalidInput", f"CIDR block {text} is outside /1-/{MAX_PREFIX[network.version]}")
            if action == "PUT":
                holder = next((n for n, b in locations.items() if text in b and n != name), None)
                if holder is not None:
                    raise CidrError("CidrBlockInUseException", f"This CIDR block is already in use: {text} in {holder}")
                locations.setdefault(name, set()).add(text)
            elif action == "DELETE_IF_EXISTS":
                locations.get(name, set()).discard(text)
            else:
                raise CidrError("InvalidInput", f"unknown action {action}")
    collection["Locations"] = {n: b for n, b in locations.items() if b}  # the request is one transaction
    collection["Version"] += 1
    return ActionResult({"Id": str(uuid.uuid4())})


def list_cidr_blocks(self: Any) -> ActionResult:
    collection = _collection(self.backend, self._get_param("CollectionId"))
    only = self._get_param("LocationName")
    blocks = [{"CidrBlock": b, "LocationName": n} for n, bs in sorted(collection["Locations"].items()) if only in (None, n)
              for b in sorted(bs)]
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or 100)
    page = blocks[start:start + size]
    result: dict[str, Any] = {"CidrBlocks": page}
    if start + size < len(blocks):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


def list_cidr_locations(self: Any) -> ActionResult:
    collection = _collection(self.backend, self._get_param("CollectionId"))
    return ActionResult({"CidrLocations": [{"LocationName": n} for n in sorted(collection["Locations"])]})


def delete_cidr_collection(self: Any) -> ActionResult:
    collection_id = self._get_param("Id")
    collection = _collection(self.backend, collection_id)
    if collection["Locations"]:
        raise CidrError("CidrCollectionInUseException", "This CIDR collection is in use, and isn't empty.")
    del _store(self.backend)[collection_id]
    return ActionResult({})


def install() -> None:
    original_init = models.RecordSet.__init__

    def init(self: Any, kwargs: dict[str, Any]) -> None:
        original_init(self, kwargs)
        self.cidr_routing_config = kwargs.get("CidrRoutingConfig")

    models.RecordSet.__init__ = init  # type: ignore[method-assign]
    for fn in (create_cidr_collection, list_cidr_collections, change_cidr_collection, list_cidr_blocks, list_cidr_locations,
               delete_cidr_collection):
        setattr(responses.Route53, fn.__name__, fn)
    dispatch = responses.Route53.dispatch
    urls.url_paths.update({
        r"{0}/(?P<api_version>[\d_-]+)/cidrcollection$": dispatch,
        r"{0}/(?P<api_version>[\d_-]+)/cidrcollection/(?P<collection_id>[^/]+)$": dispatch,
        r"{0}/(?P<api_version>[\d_-]+)/cidrcollection/(?P<collection_id>[^/]+)/cidrblocks$": dispatch,
    })


if __name__ == "__main__":
    install()
    from moto.server import main

    main()
