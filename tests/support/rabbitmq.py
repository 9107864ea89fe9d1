"""A private RabbitMQ node for tests: its own ports, directories and epmd, started and stopped
by the test (never the machine's service on 5672). Debian's rabbitmq-server drops to the
``rabbitmq`` user when started as root, so its directory is made and handed to that user."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.workers import free_port


class RabbitMQServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="recast-rabbitmq-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _environment(self) -> dict[str, str]:
        d = self.directory
        return dict(
            os.environ,
            RABBITMQ_NODENAME=f"recast{self.port}@localhost",
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_MNESIA_DIR=str(d / "mnesia" / "db"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(d / "feature_flags"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(d / "plugins-expand"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(d / "pid"),
        )

    def __enter__(self) -> RabbitMQServer:
        binary = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users.guest = true\n"
        )
        (self.directory / "enabled_plugins").write_text("[].\n")
        if os.geteuid() == 0:
            user = pwd.getpwnam("rabbitmq")
            os.chmod(self.directory, 0o755)
            for path in [self.directory, *self.directory.iterdir()]:
                os.chown(path, user.pw_uid, user.pw_gid)
        self.process = subprocess.Popen(
            [binary],
            env=self._environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: see {self.directory / 'log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError("rabbitmq-server did not open its port within 60 s")

    def _own_processes(self) -> list[int]:
        """The node's processes (beam, epmd): the wrapper moves them out of our process group,
        so they are found by the environment they were started with."""
        marker = f"ERL_EPMD_PORT={self.epmd_port}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(entry.name))
        return found

    def __exit__(self, *exc: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self._own_processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 15
            while self._own_processes() and time.monotonic() < deadline:
                time.sleep(0.2)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)
