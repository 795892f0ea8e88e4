"""The Python end-to-end tests' server fixture: primserve-server on a free loopback port.

    from primserve_test_server import Server, primserve
    server = Server(model_dir, log_path)          # waits until health says SERVING
    with primserve.Client(server.address) as client: ...
    assert server.stop() == 0                     # SIGTERM, then the exit code

Environment: PRIMSERVE_SERVER (server binary; default build/server/primserve-server),
PRIMSERVE_PYTHON_DIR (package root used when `primserve` is not importable; default build/python).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
try:
    import primserve
except ImportError:
    sys.path.insert(0, os.environ.get("PRIMSERVE_PYTHON_DIR", str(REPO_ROOT / "build" / "python")))
    import primserve

SERVER = os.environ.get("PRIMSERVE_SERVER", str(REPO_ROOT / "build" / "server" / "primserve-server"))
STARTUP_SECONDS = 30.0
SHUTDOWN_SECONDS = 30.0

__all__ = ["REPO_ROOT", "SERVER", "Server", "free_port", "primserve"]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """primserve-server on a free port with `model_dir` and the `extra` flags, its output in
    `log_path`; stop() sends SIGTERM and returns the exit code."""

    def __init__(self, model_dir, log_path, extra=()):
        if not os.access(SERVER, os.X_OK):
            raise RuntimeError(f"server binary not found: {SERVER} (build primserve-server or set PRIMSERVE_SERVER)")
        self.log_path = Path(log_path)
        for _ in range(3):  # A free port can be taken between probe and bind: retry.
            self.port = free_port()
            self.log = open(self.log_path, "ab")
            self.process = subprocess.Popen(
                [SERVER, f"--address=127.0.0.1:{self.port}", f"--model_dir={model_dir}", *extra],
                stdout=self.log, stderr=subprocess.STDOUT)
            if self._wait_serving():
                return
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.log.close()
        raise RuntimeError(f"server did not start:\n{self.log_text()}")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _wait_serving(self):
        deadline = time.monotonic() + STARTUP_SECONDS
        # Wait for the port first: a gRPC channel that fails to connect backs off for seconds.
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        with primserve.Client(self.address) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if client.health(timeout=1) == "SERVING":
                        return True
                except primserve.Error:
                    pass
                time.sleep(0.05)
        return False

    def log_text(self, tail=4000):
        return self.log_path.read_text(errors="replace")[-tail:]

    def stop(self):
        """SIGTERM, then the exit code; RuntimeError (after SIGKILL) if it runs on past
        SHUTDOWN_SECONDS."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=SHUTDOWN_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"server ignored SIGTERM for {SHUTDOWN_SECONDS} s:\n{self.log_text()}") from None
        finally:
            self.log.close()
