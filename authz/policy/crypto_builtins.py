"""OPA built-ins regorus lacks that Envoy policies use: digests, HMACs and CIDR matching, with OPA's documented
semantics (``crypto.*`` and ``net.*`` in OPA's policy reference). Registered on each embedded engine as regorus
extensions (``authz.policy.builtins``); each is deterministic, so decisions that use them may be reused.

- ``crypto.md5/sha1/sha256(x)``: lower-case hex digest of the UTF-8 bytes of ``x``.
- ``crypto.hmac.md5/sha1/sha256/sha512(x, key)``: lower-case hex HMAC of ``x`` under ``key`` (both UTF-8).
- ``crypto.hmac.equal(mac1, mac2)``: the two strings are equal, compared in constant time.
- ``net.cidr_intersects(cidr1, cidr2)``: the two networks share an address.
- ``net.cidr_contains_matches(cidrs, cidrs_or_ips)``: the set of ``[key1, key2]`` for each pair where the second is
  contained in the first (``net.cidr_contains``): an operand is a string (its key: itself), an array (keys:
  indexes), a set (keys: its elements) or an object (keys: its keys); an element is a string or a non-empty array
  whose first item is the CIDR or IP. regorus cannot hand a set whose elements are arrays or objects to an extension:
  such a call is an evaluation error (the failure status), never a match missed.

CIDRs and IPs are read as Go's ``net.ParseCIDR`` / ``net.ParseIP`` read them: dotted IPv4 without leading zeros or
IPv6 text, no zone, a decimal prefix length after ``/``; an IPv4-mapped IPv6 address is its IPv4 address. A
malformed one is an evaluation error, as in OPA. A non-string where a string belongs is an evaluation error too.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["CRYPTO_BUILTINS", "cidr_contains"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _text(value: Any, position: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"operand {position} must be string but got {type(value).__name__}")
    return value


def _digest(name: str) -> Callable[[Any], str]:
    def digest(x: Any) -> str:
        return hashlib.new(name, _text(x, 1).encode(), usedforsecurity=False).hexdigest()
    return digest


def _hmac(name: str) -> Callable[[Any, Any], str]:
    def mac(x: Any, key: Any) -> str:
        return hmac.new(_text(key, 2).encode(), _text(x, 1).encode(), name).hexdigest()
    return mac


def hmac_equal(mac1: Any, mac2: Any) -> bool:
    return hmac.compare_digest(_text(mac1, 1).encode(), _text(mac2, 2).encode())


def _address(text: str) -> _Address | None:
    """Go's ``net.ParseIP``: None when ``text`` is not an IP address."""
    if "%" in text:
        return None  # a zone: Go's ParseIP refuses it
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _network(value: Any) -> _Network:
    """Go's ``net.ParseCIDR``: the network (host bits cleared), or ValueError. An IPv4-mapped IPv6 network of at
    least 96 bits is its IPv4 network (Go's ``IPNet.Contains`` matches IPv4 addresses against it)."""
    text = _text(value, 1)
    ip, slash, prefix = text.partition("/")
    if not slash or "%" in ip or not prefix.isdigit() or not prefix.isascii():
        raise ValueError(f"invalid CIDR address: {text[:64]}")
    try:
        network = ipaddress.ip_network(f"{ipaddress.ip_address(ip)}/{int(prefix)}", strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR address: {text[:64]}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def cidr_contains(cidr: Any, cidr_or_ip: Any) -> bool:
    """OPA's ``net.cidr_contains``: an IP inside the network, or a network wholly inside it."""
    network = _network(cidr)
    text = _text(cidr_or_ip, 2)
    address = _address(text)
    if address is not None:
        return address.version == network.version and address in network
    inner = _network(text)
    return inner.version == network.version and inner.subnet_of(network)  # type: ignore[arg-type]


def cidr_intersects(cidr1: Any, cidr2: Any) -> bool:
    a, b = _network(cidr1), _network(cidr2)
    return a.version == b.version and a.overlaps(b)


def _match_term(element: Any, operand: int) -> Any:
    if isinstance(element, str):
        return element
    if isinstance(element, (list, tuple)) and element:
        return element[0]
    raise TypeError(f"operand {operand}: element must be string or non-empty array")


def _entries(value: Any, operand: int) -> Iterator[tuple[Any, Any]]:
    """(CIDR or IP, key) of each element of an operand of ``net.cidr_contains_matches``."""
    if isinstance(value, str):
        yield value, value
    elif isinstance(value, list):
        for i, element in enumerate(value):
            yield _match_term(element, operand), i
    elif isinstance(value, (set, frozenset)):
        for element in value:
            yield _match_term(element, operand), element
    elif isinstance(value, dict):
        for key, element in value.items():
            yield _match_term(element, operand), key


def _hashable(key: Any) -> Any:
    """A key as a member of the returned set (regorus makes a tuple an array)."""
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict):
        raise TypeError("net.cidr_contains_matches: an object element of a set cannot be a match key here")
    return key


def cidr_contains_matches(cidrs: Any, cidrs_or_ips: Any) -> set[tuple[Any, Any]]:
    found: set[tuple[Any, Any]] = set()
    inner = list(_entries(cidrs_or_ips, 2))
    for cidr, key1 in _entries(cidrs, 1):
        for cidr_or_ip, key2 in inner:
            if cidr_contains(cidr, cidr_or_ip):
                found.add((_hashable(key1), _hashable(key2)))
    return found


CRYPTO_BUILTINS: dict[str, tuple[int, Callable[..., Any]]] = {
    "crypto.md5": (1, _digest("md5")),
    "crypto.sha1": (1, _digest("sha1")),
    "crypto.sha256": (1, _digest("sha256")),
    "crypto.hmac.md5": (2, _hmac("md5")),
    "crypto.hmac.sha1": (2, _hmac("sha1")),
    "crypto.hmac.sha256": (2, _hmac("sha256")),
    "crypto.hmac.sha512": (2, _hmac("sha512")),
    "crypto.hmac.equal": (2, hmac_equal),
    "net.cidr_intersects": (2, cidr_intersects),
    "net.cidr_contains_matches": (2, cidr_contains_matches),
}
