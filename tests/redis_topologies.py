"""Real ``redis-server`` topologies on loopback for the L2 tier's tests: a 3-primary Redis Cluster, a primary and a
replica watched by three Sentinels (``redis-server --sentinel``), the ACL user the tier needs, and TLS certificates
made in the test. Each starts its processes side by side and stops every one it started."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.processes import Process, free_port
from tests.redis_server import RedisServer

__all__ = ["ACL_PASSWORD", "ACL_USER", "SENTINEL_SERVICE", "RedisClusterOf3", "SentinelGroup", "TlsFiles",
           "acl_rules", "make_tls_files"]

ACL_USER = "phantom-authz"
ACL_PASSWORD = "acl-password-for-the-tier-7d1c"
SENTINEL_SERVICE = "phantom-l2"


def acl_rules(prefix: str) -> list[str]:
    """``ACL SETUSER <user> …``: the tier's keys and eviction channel, and only the commands it sends (README)."""
    return ["reset", "on", f">{ACL_PASSWORD}", f"~{prefix}:*", f"&{prefix}:evictions", "-@all",
            "+get", "+set", "+del", "+sadd", "+smembers", "+pexpire", "+scan", "+zadd", "+zrange", "+zremrangebyscore",
            "+rpush", "+blpop", "+publish", "+subscribe", "+spublish", "+ssubscribe", "+ping",
            "+cluster|slots", "+cluster|shards", "+command"]


def _wait(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s")
        time.sleep(0.05)


def _start(servers: list[RedisServer]) -> None:
    for server in servers:
        server.spawn()
    for server in servers:
        server.process.await_ready()


class RedisClusterOf3:
    """Three primaries, no replicas, slots split by ``redis-cli --cluster create``."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.nodes = [RedisServer(workdir / f"node{i}", "--cluster-enabled", "yes", "--cluster-config-file",
                                  "nodes.conf", "--cluster-port", str(free_port()), "--cluster-node-timeout", "2000",
                                  *args, name=f"redis-cluster-{i}") for i in range(3)]
        self.addresses = [node.address for node in self.nodes]

    def start(self) -> RedisClusterOf3:
        try:
            _start(self.nodes)
            subprocess.run(["redis-cli", "--cluster", "create", *self.addresses, "--cluster-yes"], check=True,
                           capture_output=True, timeout=30)
            for node in self.nodes:
                client = redis.Redis(port=node.port)
                _wait(lambda c=client: c.cluster("info")["cluster_state"] == "ok",  # type: ignore[misc]
                      f"{node.address} cluster_state ok", 20)
                client.close()
        except BaseException:
            self.stop()
            raise
        return self

    def admin(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.nodes[index].port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelGroup:
    """A primary, one replica, and three Sentinels (quorum 2) watching them as ``SENTINEL_SERVICE``."""

    def __init__(self, workdir: Path, *args: str, down_after_ms: int = 1000) -> None:
        self.primary = RedisServer(workdir / "primary", *args, name="redis-primary")
        self.replica = RedisServer(workdir / "replica", "--replicaof", "127.0.0.1", str(self.primary.port), *args,
                                   name="redis-replica")
        self.sentinels: list[Process] = []
        self.addresses: list[str] = []
        for index in range(3):
            port = free_port()
            directory = workdir / f"sentinel{index}"
            directory.mkdir(parents=True, exist_ok=True)
            conf = directory / "sentinel.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {down_after_ms}\n"
                            f"sentinel failover-timeout {SENTINEL_SERVICE} 10000\n"
                            f"sentinel parallel-syncs {SENTINEL_SERVICE} 1\n", encoding="utf-8")
            self.sentinels.append(Process(f"sentinel-{index}", ["redis-server", str(conf), "--sentinel"], port,
                                          directory))
            self.addresses.append(f"127.0.0.1:{port}")

    def start(self) -> SentinelGroup:
        try:
            _start([self.primary, self.replica])
            for sentinel in self.sentinels:
                sentinel.spawn()
            for sentinel in self.sentinels:
                sentinel.await_ready()
            # a failover needs the replica known and two other Sentinels to vote with
            for sentinel in self.sentinels:
                client = redis.Redis(port=sentinel.port, decode_responses=True)
                _wait(lambda c=client: self._sees_everyone(c),  # type: ignore[misc]
                      f"{sentinel.name} sees the replica and the others", 20)
                client.close()
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _sees_everyone(sentinel: redis.Redis) -> bool:
        state = sentinel.sentinel_master(SENTINEL_SERVICE)
        return int(state["num-slaves"]) == 1 and int(state["num-other-sentinels"]) == 2

    def primary_port(self) -> int:
        """The primary the first live Sentinel names now."""
        for sentinel in self.sentinels:
            if sentinel.running:
                client = redis.Redis(port=sentinel.port, decode_responses=True)
                try:
                    return int(client.sentinel_get_master_addr_by_name(SENTINEL_SERVICE)[1])
                finally:
                    client.close()
        raise RuntimeError("no Sentinel is running")

    def node(self, port: int) -> RedisServer:
        return self.primary if self.primary.port == port else self.replica

    def ensure_replica(self) -> None:
        """Restart a data node that was killed, as a replica of the primary (as an orchestrator would), and wait
        until it is in sync and every Sentinel sees it up."""
        primary = self.primary_port()
        replica = self.replica if self.node(primary) is self.primary else self.primary
        if not replica.process.running:
            replica.process.argv += ["--replicaof", "127.0.0.1", str(primary)]  # the last one given wins
            replica.start()
        client = redis.Redis(port=replica.port, decode_responses=True)
        _wait(lambda: client.info("replication").get("master_link_status") == "up", "the replica in sync", 30)
        client.close()
        for sentinel in self.sentinels:
            sentinel_client = redis.Redis(port=sentinel.port, decode_responses=True)
            _wait(lambda c=sentinel_client: not any(  # type: ignore[misc]
                "s_down" in r["flags"] for r in c.sentinel_slaves(SENTINEL_SERVICE)), "Sentinels see it up", 30)
            sentinel_client.close()

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: promote the replica now, without waiting for the primary to fail."""
        client = redis.Redis(port=self.sentinels[0].port)
        client.sentinel_failover(SENTINEL_SERVICE)
        client.close()

    def stop(self) -> None:
        for process in [*self.sentinels, self.primary.process, self.replica.process]:
            process.stop()


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed neither


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey]
                 | None, ip: str | None = None) -> tuple[x509.Name, bytes]:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = issuer if issuer is not None else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True))
    if ip is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return subject, builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed, and an unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name, ca_pem = _certificate("redis test CA", ca_key, None)
    files: dict[str, bytes] = {"ca.pem": ca_pem, "other-ca.pem": _certificate(
        "unrelated CA", ec.generate_private_key(ec.SECP256R1()), None)[1]}
    for role, ip in (("server", "127.0.0.1"), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{role}.pem"] = _certificate(f"redis {role}", key, (ca_name, ca_key), ip)[1]
        files[f"{role}.key"] = _key_pem(key)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                    directory / "client.pem", directory / "client.key", directory / "other-ca.pem")
