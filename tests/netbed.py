"""A test bed of separate hosts on one machine: network namespaces on a bridge, with the broker reachable by relay.

Topology (addresses are 10.<b>.<c>.x with <b>.<c> chosen per bed, so two beds never collide)::

                     root namespace (this machine)
      RabbitMQ 127.0.0.1:5672   Redis 127.0.0.1:6379   (the machine's own services)
                ^                      ^
                |  relay               |  relay          (threads of the test process)
           10.b.c.1:5672          10.b.c.1:6379          on the bridge `cmlbr<id>`
                |----------------------|-------------------------------------------
             veth              veth              veth
          host "w1"         host "w2"         host "producer"       (one namespace each)
          10.b.c.11         10.b.c.12         10.b.c.13

RabbitMQ's guest account only accepts connections from localhost; the relays
connect from there, so the hosts use guest/guest like the rest of the tests.
Cutting a host is ``ip link set <its veth> down`` on the bridge side: its
packets go nowhere, exactly as when a cable or a switch port fails, and
neither end is told; only heartbeats can notice. Everything a bed made (the
namespaces, the bridge and veths, the relays, processes started in the hosts)
is removed by :meth:`TestBed.close`, which runs on failure too (use it as a
context manager).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field

BROKER_PORT, REDIS_PORT = 5672, 6379


def netns_unavailable_reason() -> str | None:
    """Why this machine cannot build a bed (not root, no `ip`, namespaces refused), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run the cluster tests as root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"cmlprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, namespace: str | None = None) -> None:
    command = ["ip", *(["netns", "exec", namespace, "ip"] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


class Relay:
    """A TCP relay: accepts on ``listen`` and pipes each connection to ``target``, in threads."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen, reuse_port=False)
        self.server.settimeout(0.2)
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name=f"relay-{listen[1]}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            # One side is gone: so is the connection, as a real broker's would be.
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        self._thread.join(5)


@dataclass
class Host:
    """One namespace on the bridge: its name, address and the bridge-side end of its cable."""

    name: str
    namespace: str
    address: str
    cable: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def run(self, command: list[str], **kwargs) -> subprocess.Popen:
        """Start ``command`` inside this host, in its own process group (so it can be killed whole)."""
        process = subprocess.Popen(["ip", "netns", "exec", self.namespace, *command], start_new_session=True, **kwargs)
        self.processes.append(process)
        return process

    def prefix(self) -> list[str]:
        """The command prefix that runs a program on this host."""
        return ["ip", "netns", "exec", self.namespace]


class NetworkBed:
    """Hosts as network namespaces on one bridge, with relays to the machine's RabbitMQ and Redis.

    Args:
        vhost: The RabbitMQ virtual host the hosts use: one of their own keeps their
            workers from taking other tests' tasks.

    Use as a context manager; everything is torn down on exit, failures included.
    """

    def __init__(self, vhost: str = "/") -> None:
        self.vhost = vhost
        self.id = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
        self.subnet = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
        self.bridge = f"cmlbr{self.id}"[:15]
        self.gateway = f"{self.subnet}.1"
        self.hosts: dict[str, Host] = {}
        self.relays: list[Relay] = []
        self._made_bridge = False

    @property
    def broker_url(self) -> str:
        return f"amqp://guest:guest@{self.gateway}:{BROKER_PORT}/{'' if self.vhost == '/' else self.vhost}"

    @property
    def result_backend(self) -> str:
        return f"redis://{self.gateway}:{REDIS_PORT}/0"

    def env(self) -> dict[str, str]:
        """What a process on a host needs to reach the broker and the result backend."""
        return {**os.environ, "CRYPTO_ML_BROKER_URL": self.broker_url, "CRYPTO_ML_RESULT_BACKEND": self.result_backend}

    def __enter__(self) -> NetworkBed:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made_bridge = True
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            self.relays = [
                Relay((self.gateway, BROKER_PORT), ("127.0.0.1", BROKER_PORT)),
                Relay((self.gateway, REDIS_PORT), ("127.0.0.1", REDIS_PORT)),
            ]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_host(self, name: str) -> Host:
        """A new namespace with one cable to the bridge and its own address."""
        number = len(self.hosts) + 11
        host = Host(
            name=name,
            namespace=f"cml{self.id}{name}"[:32],
            address=f"{self.subnet}.{number}",
            cable=f"cml{self.id}h{number}"[:15],
        )
        self.hosts[name] = host
        inside = f"cmli{self.id}{number}"[:15]
        _ip("netns", "add", host.namespace)
        _ip("link", "add", host.cable, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", host.namespace)
        _ip("link", "set", host.cable, "master", self.bridge)
        _ip("link", "set", host.cable, "up")
        _ip("addr", "add", f"{host.address}/24", "dev", inside, namespace=host.namespace)
        _ip("link", "set", inside, "up", namespace=host.namespace)
        _ip("link", "set", "lo", "up", namespace=host.namespace)
        return host

    def cut(self, name: str) -> None:
        """Unplug a host: its packets go nowhere, and nobody is told."""
        _ip("link", "set", self.hosts[name].cable, "down")

    def restore(self, name: str) -> None:
        """Plug it back in."""
        _ip("link", "set", self.hosts[name].cable, "up")

    def close(self) -> None:
        """Stop every process started on a host, then remove the relays, namespaces, cables and bridge."""
        for host in self.hosts.values():
            for process in host.processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, 9)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(10)
        for relay in self.relays:
            relay.close()
        for host in self.hosts.values():
            subprocess.run(["ip", "link", "del", host.cable], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        if self._made_bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self.hosts.clear()
        self.relays = []
