"""Real Redis topologies for the high-availability tests: a primary with a replica
watched by three sentinels, and a Redis Cluster of three primaries with a replica
each. Every process is a `redis-server` on a free loopback port, in a directory of
its own, stopped (and waited for) by `stop()`. Waits are on conditions, generous
for a slow shared machine, never fixed sleeps."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from tests.support.processes import free_port, wait_for

STARTUP_S = 30.0
FAILOVER_S = 60.0
MASTER_NAME = "turnout-primary"


class Server:
    def __init__(self, directory: Path, *args: str, sentinel: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        command = ["redis-server"]
        if sentinel:
            config = directory / "sentinel.conf"  # sentinel rewrites its configuration file
            config.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n" + "".join(f"{a}\n" for a in args))
            command += [str(config), "--sentinel"]
        else:
            command += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
            command += ["--save", "", "--appendonly", "no", *args]
        self._log = (directory / "server.log").open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self.client = redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)
        self.binary = redis.Redis(port=self.port, socket_timeout=5)  # for values that are not text

    def answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.client.close()
        self.binary.close()
        self._log.close()

    def info(self, section: str) -> dict[str, object]:
        return dict(self.client.info(section))


def _started(servers: list[Server]) -> None:
    if not wait_for(lambda: all(s.answers() for s in servers), STARTUP_S):
        for server in servers:
            server.stop()
        raise AssertionError("a redis-server did not start")


class SentinelSetup:
    """A primary, one replica, three sentinels (quorum 2)."""

    def __init__(self, directory: Path) -> None:
        self.primary = Server(directory / "primary")
        _started([self.primary])
        self.replica = Server(directory / "replica", "--replicaof", "127.0.0.1", str(self.primary.port))
        monitor = [
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {MASTER_NAME} 2000",
            f"sentinel failover-timeout {MASTER_NAME} 20000",
        ]
        self.sentinels = [Server(directory / f"sentinel{i}", *monitor, sentinel=True) for i in range(3)]
        self.servers = [self.primary, self.replica, *self.sentinels]
        _started(self.servers)
        if not wait_for(self._ready, STARTUP_S, interval=0.25):
            self.stop()
            raise AssertionError("the sentinels did not see the replica and each other")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def _ready(self) -> bool:
        try:
            replica = self.replica.info("replication").get("master_link_status") == "up"
            return replica and all(
                len(s.client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)) == 1
                and len(s.client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)) == 2
                for s in self.sentinels
            )
        except redis.RedisError:
            return False

    def primary_port(self) -> int:
        _, port = self.sentinels[0].client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return int(port)

    def fail_over(self) -> None:
        """SENTINEL FAILOVER: the replica is promoted, the old primary follows it."""
        before = self.primary_port()
        self.sentinels[0].client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        if not wait_for(lambda: self.primary_port() != before, FAILOVER_S, interval=0.25):
            raise AssertionError("the sentinels did not fail over")

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


class ClusterSetup:
    """Three primaries and a replica of each, slots spread by `redis-cli --cluster create`."""

    def __init__(self, directory: Path) -> None:
        options = ["--cluster-enabled", "yes", "--cluster-node-timeout", "3000", "--cluster-config-file", "nodes.conf"]
        # The bus port defaults to the port + 10000, which may be taken or past 65535: one of its own.
        self.nodes = [Server(directory / f"node{i}", *options, "--cluster-port", str(free_port())) for i in range(6)]
        _started(self.nodes)
        create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes)]
        done = subprocess.run(
            [*create, "--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0 or not wait_for(self._ok, STARTUP_S, interval=0.25):
            self.stop()
            raise AssertionError(f"the cluster did not form: {done.stdout}\n{done.stderr}")

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def _ok(self) -> bool:
        try:
            for node in self.nodes:
                if node.info("cluster").get("cluster_enabled") != 1:
                    return False
                if "cluster_state:ok" not in node.client.execute_command("CLUSTER", "INFO"):
                    return False
                replication = node.info("replication")
                if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                    return False
            return True
        except redis.RedisError:
            return False

    def node_for(self, key: str) -> Server:
        """The primary that serves `key`'s slot now."""
        slot = int(self.nodes[0].client.execute_command("CLUSTER", "KEYSLOT", key))
        asked = next(n for n in self.nodes if n.info("replication")["role"] == "master")
        for start, end, primary, *_ in asked.client.execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                port = int(primary[1])
                return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no node serves slot {slot}")

    def replica_of(self, primary: Server) -> Server:
        for node in self.nodes:
            replication = node.info("replication")
            if replication["role"] == "slave" and int(str(replication["master_port"])) == primary.port:
                return node
        raise AssertionError(f"no replica of 127.0.0.1:{primary.port}")

    def fail_over(self, key: str) -> tuple[Server, Server]:
        """CLUSTER FAILOVER on the replica of `key`'s primary: a coordinated switch (the primary
        stops taking writes until the replica has all of them). Returns (old, new) primary."""
        old = self.node_for(key)
        new = self.replica_of(old)
        new.client.execute_command("CLUSTER", "FAILOVER")
        if not wait_for(lambda: self.node_for(key).port == new.port and self._ok(), FAILOVER_S, interval=0.25):
            raise AssertionError("the cluster did not fail over")
        return old, new

    def primaries_holding_keys(self, prefix: str) -> int:
        """How many primaries hold at least one key that starts with `prefix` (or its hash tag)."""
        count = 0
        for node in self.nodes:
            if node.info("replication")["role"] != "master":
                continue
            found = list(node.client.scan_iter(match=f"*{prefix}*", count=1000))
            count += bool(found)
        return count

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
