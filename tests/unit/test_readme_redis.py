"""README "The Redis tier", as written: its ``cache.redis`` example loads in each of the three topologies it shows
(the TLS and password files it names stand in for by real ones), and its ``ACL SETUSER`` line grants exactly what the
tier is tested under as a least-privileged user (``tests/redis_topologies.acl_rules``: the ACL log stays empty)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from authz.config import load_config
from tests.redis_topologies import ACL_PASSWORD, acl_rules, make_tls_files

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("\n### The Redis tier"):README.index("\n## What the client sees")]
SERVER = {"introspection_endpoint": "https://as.example/introspect", "client_id": "gw", "client_secret_env": "GW",
          "issuer": "https://as.example"}


def _example() -> str:
    return re.search(r"```yaml\n(cache:\n.*?)```", SECTION, re.S).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize("topology", ["url", "sentinel", "cluster"])
def test_the_example_loads_in_each_topology(tmp_path: Path, topology: str) -> None:
    files = make_tls_files(tmp_path / "pki")
    password = tmp_path / "redis-password"
    password.write_text("from-the-file\n", encoding="utf-8")
    text = (_example().replace("/etc/redis-tls/ca.crt", str(files.ca))
            .replace("/etc/redis-tls/tls.crt", str(files.client_cert))
            .replace("/etc/redis-tls/tls.key", str(files.client_key))
            .replace("/run/secrets/redis-password", str(password)))
    if topology != "url":  # the commented alternative in place of the url
        text = re.sub(r"\n    url: .*", "", text)
        text = text.replace(f"# {topology}: ", f"{topology}: ")
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump({"authorization_servers": {"as": SERVER}}) + text, encoding="utf-8")
    redis = load_config(path, {"GW": "x"}).cache.redis
    assert redis.topology == {"url": "standalone"}.get(topology, topology)
    assert redis.uses_tls and redis.tls is not None and redis.tls.check_hostname
    assert redis.username == "phantom-authz" and redis.password is not None
    assert redis.password.reveal() == "from-the-file"
    assert (redis.timeout_seconds, redis.key_prefix, redis.eviction_lease_seconds) == (0.05, "phantom-authz", 10)


def test_the_acl_line_grants_what_the_tier_is_tested_with() -> None:
    line = next(li.strip() for li in SECTION.splitlines() if li.strip().startswith("ACL SETUSER"))
    words = line.split()
    assert words[:4] == ["ACL", "SETUSER", "phantom-authz", "on"] and words[4] == ">PASSWORD"
    granted = {w for w in words[5:] if w[0] in "~&+-"}
    tested = {w for w in acl_rules("phantom-authz") if w[0] in "~&+-"}
    assert granted == tested, (granted - tested, tested - granted)
    # resetkeys/resetchannels start from nothing, as the tests' "reset" does
    assert {"resetkeys", "resetchannels"} <= set(words) and ACL_PASSWORD not in line
