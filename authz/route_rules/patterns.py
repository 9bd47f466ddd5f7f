"""The match conditions of a route rule, each compiled once: path patterns, host patterns, principal globs.

Each pattern knows three things: whether it matches a request's value, its *specificity* (a tuple; larger is more
specific) and whether it can match a value another pattern also matches (``meets``), which is how overlapping rules
are found at load. No regular expressions: paths and hosts compare segment by segment and label by label, and a
principal glob's ``*`` is matched by plain string search.

Paths (the normal-form path, without its query, split on ``/``; each segment percent-decoded)::

    /health              exact
    /api/**              prefix on segment boundaries: /api, /api/, /api/x/y (not /apix)
    /records/{owner}/**  template: {name} is one non-empty segment, kept as a parameter; * is one unnamed segment
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from authz.request_form import path_problem

__all__ = ["HostPattern", "PathPattern", "PatternError", "PrincipalGlob", "request_host", "split_path"]

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]{0,63})\}\Z")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]\Z")
_PRINCIPAL = re.compile(r"^[\x21-\x7e]+\Z")  # printable ASCII, no space
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+\Z")  # SPIFFE's trust domain characters (lower case only)
_PARAM_SEGMENT = object()  # a segment of a template that is a parameter (named or not)


class PatternError(ValueError):
    """A pattern that is not valid, or that no request can match; ``str()`` says why."""


def split_path(path: str) -> tuple[str, ...]:
    """The segments of a normal-form path (no query), percent-decoded: ``/a/b%20c/`` -> ``("a", "b c", "")``."""
    segments = path[1:].split("/")
    if "%" in path:
        return tuple(unquote(s, errors="strict") for s in segments)
    return tuple(segments)


@dataclass(frozen=True, slots=True)
class PathPattern:
    text: str
    segments: tuple[object, ...]  # a literal (decoded) str, or _PARAM_SEGMENT
    names: tuple[str | None, ...]  # per segment: the parameter's name (None: a literal or *)
    rest: bool  # ends with /**: any number of further segments, none included

    @classmethod
    def parse(cls, text: str) -> PathPattern:
        if not isinstance(text, str) or not text.startswith("/"):
            raise PatternError(f"path pattern {text!r} must start with /")
        raw = text[1:].split("/")
        rest = raw[-1] == "**"
        if rest:
            raw.pop()
        segments: list[object] = []
        names: list[str | None] = []
        seen: set[str] = set()
        for index, segment in enumerate(raw):
            param = _PARAM.match(segment)
            if param is not None or segment == "*":
                name = param.group(1) if param is not None else None
                if name is not None and name in seen:
                    raise PatternError(f"path pattern {text!r} names the segment {{{name}}} twice")
                if name is not None:
                    seen.add(name)
                segments.append(_PARAM_SEGMENT)
                names.append(name)
                continue
            if any(c in segment for c in "{}*"):
                raise PatternError(f"path pattern {text!r}: segment {segment!r} is not a literal, {{name}}, * or a "
                                   "final **")
            if segment == "" and (index != len(raw) - 1 or rest):
                raise PatternError(f"path pattern {text!r} has an empty segment: no normal-form path matches it")
            problem = path_problem("/" + segment, allow_encoded_slashes=True)
            if problem is not None:
                raise PatternError(f"path pattern {text!r}: no normal-form path matches it ({problem})")
            segments.append(unquote(segment))
            names.append(None)
        return cls(text, tuple(segments), tuple(names), rest)

    @property
    def kind(self) -> str:
        if _PARAM_SEGMENT in self.segments:
            return "template"
        return "prefix" if self.rest else "exact"

    @property
    def first(self) -> str | None:
        """The first segment when it is a literal (the index key), else None."""
        if self.segments and self.segments[0] is not _PARAM_SEGMENT:
            return self.segments[0]  # type: ignore[return-value]
        return None

    def specificity(self) -> tuple[int, ...]:
        """exact > template > prefix; among templates more literal segments, then more segments, then no ``**``;
        among prefixes (and exact paths) more segments."""
        kind = self.kind
        if kind == "exact":
            return (3, len(self.segments), 0, 0)
        if kind == "template":
            literals = sum(1 for s in self.segments if s is not _PARAM_SEGMENT)
            return (2, literals, len(self.segments), 0 if self.rest else 1)
        return (1, len(self.segments), 0, 0)

    def match(self, segments: tuple[str, ...]) -> dict[str, str] | None:
        """The named parameters when ``segments`` (from ``split_path``) match, else None."""
        own = self.segments
        if len(segments) != len(own) and not (self.rest and len(segments) >= len(own)):
            return None
        params: dict[str, str] = {}
        for index, want in enumerate(own):
            got = segments[index]
            if want is _PARAM_SEGMENT:
                if not got:
                    return None
                name = self.names[index]
                if name is not None:
                    params[name] = got
            elif got != want:
                return None
        return params

    def meets(self, other: PathPattern) -> bool:
        """Whether some path matches both."""
        for mine, theirs in zip(self.segments, other.segments, strict=False):
            if mine is not _PARAM_SEGMENT and theirs is not _PARAM_SEGMENT and mine != theirs:
                return False
        if len(self.segments) == len(other.segments):
            return True
        shorter = self if len(self.segments) < len(other.segments) else other
        return shorter.rest


def request_host(authority: str) -> tuple[str, str | None]:
    """(name, port) of a request's ``:authority``: lower-cased, a final dot dropped; port None when absent. Only ASCII
    letters are lower-cased (str.lower() makes the Kelvin sign a k): a name with other letters matches no pattern."""
    host = authority.lower() if authority.isascii() else authority
    port: str | None = None
    if host.startswith("["):
        end = host.find("]")
        if end != -1 and host[end + 1:end + 2] == ":":
            host, port = host[:end + 1], host[end + 2:]
    elif ":" in host:
        host, _, port = host.rpartition(":")
    return host[:-1] if host.endswith(".") else host, port  # one final dot: the same DNS name


@dataclass(frozen=True, slots=True)
class HostPattern:
    text: str
    name: str  # without "*." for a wildcard
    wildcard: bool  # *.suffix: any name ending in .suffix (not suffix itself)
    port: str | None  # None: any port

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        if not isinstance(text, str) or not text:
            raise PatternError("a host must be a non-empty string")
        name, port = request_host(text)
        if port is not None and not (port.isdigit() and 0 < int(port) <= 65535):
            raise PatternError(f"host {text!r}: port must be 1-65535")
        wildcard = name.startswith("*.")
        if wildcard:
            name = name[2:]
        labels = name.split(".")
        if not (_IPV6.match(name) and not wildcard) and not all(_LABEL.match(label) for label in labels):
            raise PatternError(f"host {text!r} must be a DNS name, *.suffix, an IP address, optionally with :port")
        return cls(text, name, wildcard, port)

    @property
    def key(self) -> str | None:
        """The index key: the exact name, or None for a wildcard."""
        return None if self.wildcard else self.name

    def specificity(self) -> tuple[int, ...]:
        """exact (with port first) > ``*.suffix`` (longer suffix first)."""
        if self.wildcard:
            return (1, self.name.count(".") + 1, self.port is not None)
        return (2, 0, self.port is not None)

    def match(self, name: str, port: str | None) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.wildcard:
            return name.endswith("." + self.name)
        return name == self.name

    def meets(self, other: HostPattern) -> bool:
        if self.port is not None and other.port is not None and self.port != other.port:
            return False
        if not self.wildcard and not other.wildcard:
            return self.name == other.name
        if self.wildcard and other.wildcard:
            longer, shorter = (self.name, other.name) if len(self.name) >= len(other.name) else (other.name, self.name)
            return longer == shorter or longer.endswith("." + shorter)
        exact, wild = (other, self) if self.wildcard else (self, other)
        return exact.name.endswith("." + wild.name)


@dataclass(frozen=True, slots=True)
class PrincipalGlob:
    """A SPIFFE id (``spiffe://cluster.local/ns/foo/sa/bar``), exact or with ``*`` standing for any characters."""

    text: str
    parts: tuple[str, ...]  # split on *; one part: exact

    @classmethod
    def parse(cls, text: str) -> PrincipalGlob:
        if not isinstance(text, str) or not _PRINCIPAL.match(text):
            raise PatternError(f"principal {text!r} must be a non-empty SPIFFE id (printable, no spaces)")
        if text.strip("*") == "":
            raise PatternError(f"principal {text!r} matches every caller: leave the condition out instead")
        return cls(text, tuple(text.split("*")))

    @classmethod
    def parse_spiffe(cls, text: str) -> PrincipalGlob:
        """A route rule's principal: ``spiffe://<trust domain>/<path>``, the trust domain written out (a ``*`` only
        after it), so a peer of another trust domain the listener trusts can never match it."""
        glob = cls.parse(text)
        domain, slash, path = text.removeprefix("spiffe://").partition("/")
        if not text.startswith("spiffe://") or not _TRUST_DOMAIN.match(domain) or not slash or not path:
            raise PatternError(f"principal {text!r} must be spiffe://<trust domain>/<path>, the trust domain in lower "
                               "case and without *, so that no peer of another trust domain matches it")
        return glob

    def specificity(self) -> tuple[int, int]:
        """exact > glob; among globs, more literal characters first."""
        return (2, 0) if len(self.parts) == 1 else (1, sum(len(p) for p in self.parts))

    def match(self, value: str) -> bool:
        parts = self.parts
        if len(parts) == 1:
            return value == parts[0]
        head, tail = parts[0], parts[-1]
        if len(value) < len(head) + len(tail) or not value.startswith(head) or not value.endswith(tail):
            return False
        at, end = len(head), len(value) - len(tail)
        for part in parts[1:-1]:
            found = value.find(part, at, end)
            if found == -1:
                return False
            at = found + len(part)
        return True

    def meets(self, other: PrincipalGlob) -> bool:
        if len(self.parts) == 1:
            return other.match(self.text)
        if len(other.parts) == 1:
            return self.match(other.text)
        # both have a *: a common value exists exactly when their heads and tails agree
        heads = sorted((self.parts[0], other.parts[0]), key=len)
        tails = sorted((self.parts[-1], other.parts[-1]), key=len)
        return heads[1].startswith(heads[0]) and tails[1].endswith(tails[0])
