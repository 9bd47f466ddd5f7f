"""Route rules compiled once into a table the service matches each request against (``RuleTable.match``).

A rule matches a request when every condition it lists matches (a list's values are alternatives). Of the matching
rules the most specific wins; specificity compares, in order: the path (exact > template > prefix > none), the host
(exact with port > exact > ``*.suffix`` > none), the destination principal, then the source principal (exact > glob
> none), methods listed, then the number of header conditions. A rule listing several paths, hosts or principals is
ranked by the ones that matched. Two rules of equal specificity that can match the same request are refused at
load (``RuleError`` naming both); equal ones that cannot are kept in file order.

The table is indexed by exact host and first path segment, so a request is compared with the rules that can match
it (at most every rule, when none names a host or a literal first segment).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product

from authz.route_rules.patterns import HostPattern, PathPattern, PrincipalGlob, request_host, split_path

__all__ = ["Facts", "Match", "RuleError", "RuleSpec", "RuleTable"]

Rank = tuple[tuple[int, ...], ...]


class RuleError(ValueError):
    """A rule the table refuses; ``rule`` is its index (for the config key), ``str()`` says why."""

    def __init__(self, rule: int, why: str) -> None:
        super().__init__(why)
        self.rule = rule
        self.why = why


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule's match conditions, as the configuration lists them (empty: no condition)."""

    name: str
    paths: tuple[PathPattern, ...] = ()
    hosts: tuple[HostPattern, ...] = ()
    methods: frozenset[str] = frozenset()
    destination_principals: tuple[PrincipalGlob, ...] = ()
    source_principals: tuple[PrincipalGlob, ...] = ()
    headers: tuple[tuple[str, str | None], ...] = ()  # (lower-case name, exact value or None: present)


@dataclass(slots=True)
class Facts:
    """What rules match on, of one request. Principals are None when the transport does not carry them."""

    method: str
    host: str
    path: str  # normal form, no query
    headers: Mapping[str, str] = field(default_factory=dict)
    source_principal: str | None = None
    destination_principal: str | None = None
    segments: tuple[str, ...] = ()
    host_name: str = ""
    port: str | None = None

    def __post_init__(self) -> None:
        self.segments = split_path(self.path)
        self.host_name, self.port = request_host(self.host)


@dataclass(frozen=True, slots=True)
class Match:
    rule: int  # the winning rule's index
    params: Mapping[str, str]  # the named segments of its path template


@dataclass(frozen=True, slots=True)
class _Alternative:
    """One way a rule can match: one of its paths x one of its hosts x one of each principal list."""

    rule: int
    rank: Rank
    path: PathPattern | None
    host: HostPattern | None
    destination: PrincipalGlob | None
    source: PrincipalGlob | None
    methods: frozenset[str]
    headers: tuple[tuple[str, str | None], ...]

    def mismatch(self, facts: Facts) -> str | None:
        """None when this alternative matches (``params`` then gives the template's segments), else the first
        condition that does not."""
        if self.methods and facts.method not in self.methods:
            return "methods"
        if self.host is not None and not self.host.match(facts.host_name, facts.port):
            return "hosts"
        if self.path is not None and self.path.match(facts.segments) is None:
            return "paths"
        if self.destination is not None and (facts.destination_principal is None
                                             or not self.destination.match(facts.destination_principal)):
            return "destination_principals"
        if self.source is not None and (facts.source_principal is None
                                        or not self.source.match(facts.source_principal)):
            return "source_principals"
        for name, value in self.headers:
            got = facts.headers.get(name)
            if got is None or (value is not None and got != value):
                return "headers"
        return None

    def params(self, facts: Facts) -> Mapping[str, str]:
        return (self.path.match(facts.segments) or {}) if self.path is not None else {}

    def meets(self, other: _Alternative) -> bool:
        """Whether one request can match both (conservative for header values and principal globs)."""
        if self.methods and other.methods and not self.methods & other.methods:
            return False
        for mine, theirs in ((self.path, other.path), (self.host, other.host),
                             (self.destination, other.destination), (self.source, other.source)):
            if mine is not None and theirs is not None and not mine.meets(theirs):  # type: ignore[arg-type]
                return False
        values = dict(self.headers)
        return all(values.get(name, value) in (None, value) or value is None for name, value in other.headers)


def _alternatives(index: int, spec: RuleSpec) -> list[_Alternative]:
    out = []
    for path, host, destination, source in product(spec.paths or (None,), spec.hosts or (None,),
                                                   spec.destination_principals or (None,),
                                                   spec.source_principals or (None,)):
        rank: Rank = (
            path.specificity() if path is not None else (0,),
            host.specificity() if host is not None else (0,),
            destination.specificity() if destination is not None else (0,),
            source.specificity() if source is not None else (0,),
            (1 if spec.methods else 0, len(spec.headers)),
        )
        out.append(_Alternative(index, rank, path, host, destination, source, spec.methods, spec.headers))
    return out


class RuleTable:
    """The compiled rules; ``match`` finds the winning rule of a request (None: no rule matches)."""

    def __init__(self, specs: Sequence[RuleSpec]) -> None:
        self.specs = tuple(specs)
        alternatives = [alt for index, spec in enumerate(self.specs) for alt in _alternatives(index, spec)]
        _refuse_overlaps(self.specs, alternatives)
        order = sorted(alternatives, key=lambda alt: (_negated(alt.rank), alt.rule))
        buckets: dict[tuple[str | None, str | None], list[tuple[int, _Alternative]]] = defaultdict(list)
        for position, alt in enumerate(order):  # each bucket in the order of precedence
            buckets[(alt.host.key if alt.host is not None else None,
                     alt.path.first if alt.path is not None else None)].append((position, alt))
        self._buckets = dict(buckets)
        self._last = len(order)

    def __len__(self) -> int:
        return len(self.specs)

    def match(self, facts: Facts) -> Match | None:
        best: _Alternative | None = None
        best_at = self._last
        first = facts.segments[0]
        for key in ((facts.host_name, first), (facts.host_name, None), (None, first), (None, None)):
            for at, alt in self._buckets.get(key, ()):
                if at >= best_at:
                    break  # this bucket holds nothing better than what was found
                if alt.mismatch(facts) is None:
                    best, best_at = alt, at
                    break
        return None if best is None else Match(best.rule, best.params(facts))

    def explain(self, facts: Facts) -> tuple[Match | None, list[tuple[int, str]]]:
        """The match, and for every other rule why it lost: the condition that failed, or that it matched with
        less specificity."""
        found = self.match(facts)
        reasons = []
        for index, spec in enumerate(self.specs):
            if found is not None and index == found.rule:
                continue
            failures = [alt.mismatch(facts) for alt in _alternatives(index, spec)]
            if None in failures:
                reasons.append((index, "matches, but a more specific rule wins"))
            else:
                condition = failures[0]
                reasons.append((index, f"{condition} do not match ({_listed(spec, condition)})"))
        return found, reasons


def _negated(rank: Rank) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(-n for n in part) for part in rank)


def _listed(spec: RuleSpec, condition: str | None) -> str:
    values: Sequence[object] = getattr(spec, condition or "paths")
    shown = [getattr(v, "text", v) for v in values] if condition != "headers" else [
        f"{name}={value}" if value is not None else f"{name} present" for name, value in spec.headers]
    return ", ".join(sorted(str(v) for v in shown))


def _refuse_overlaps(specs: Sequence[RuleSpec], alternatives: list[_Alternative]) -> None:
    """Two rules whose alternatives rank equal and can match one request: neither is more specific; refuse."""
    groups: dict[tuple[Rank, str | None], list[_Alternative]] = defaultdict(list)
    for alt in alternatives:
        groups[(alt.rank, alt.path.first if alt.path is not None else None)].append(alt)
    for (rank, first), group in groups.items():
        others = group + (groups.get((rank, None), []) if first is not None else [])
        for i, alt in enumerate(group):
            for other in others[i + 1:]:
                if other.rule != alt.rule and alt.meets(other):
                    low, high = sorted((alt.rule, other.rule))
                    raise RuleError(high, f"overlaps rule {low} ({specs[low].name}): both can match the same "
                                          "request with equal specificity; narrow one of them (a host, method, "
                                          "principal or a longer path)")
