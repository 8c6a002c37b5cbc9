"""Debian's ``redis-server`` on a loopback port, installed on demand."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import redis

from tracker.devstack.process import ManagedProcess, ensure_port_free, free_port
from tracker.errors import StackError
from tracker.redisconn import RESP_PROTOCOL

_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def ensure_redis_installed() -> str:
    """Path of ``redis-server``; installs Debian's package when running as root."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            "redis-server is not installed. Install it with `sudo apt-get install redis-server` "
            "(or point TRACKER_REDIS_URL at an existing Redis) and try again."
        )
    _apt_install("redis-server")
    found = shutil.which("redis-server")
    if not found:
        raise StackError("apt-get reported success but redis-server is still not on PATH")
    return found


def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # policy-rc.d exit 101 stops the package's post-install script from starting a system-wide
    # Redis on port 6379 behind our back: we start our own, on a port of our choosing.
    created_policy = not _POLICY_RC_D.exists()
    if created_policy:
        _POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        _POLICY_RC_D.chmod(0o755)
    try:
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
            result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            if result.returncode != 0:
                raise StackError(
                    f"`{' '.join(argv)}` failed (exit {result.returncode}); install {package} by hand. "
                    f"apt-get said:\n{result.stderr.strip()[-2000:]}"
                )
    finally:
        if created_policy:
            _POLICY_RC_D.unlink(missing_ok=True)


class RedisServer:
    """A throwaway Redis: no persistence, loopback only."""

    def __init__(self, *, data_dir: Path, port: int = 0):
        self.data_dir = data_dir
        self.port = port or free_port()
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        binary = ensure_redis_installed()
        ensure_port_free("127.0.0.1", self.port, "Redis")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        self._process = ManagedProcess("Redis", argv, self.data_dir / "redis.log")
        self._process.start()
        self._process.wait_until(self._pings, timeout, "answering PING")

    def _pings(self) -> bool:
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            protocol=RESP_PROTOCOL,
            socket_timeout=1,
            socket_connect_timeout=1,
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(timeout=10)
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None
