"""End-to-end test of the Python client's TLS and bearer-token keyword arguments.

One server with TLS (certificates made here with openssl) and a token file, plus a plaintext
admin port: calls with the CA and the token succeed, a missing or wrong token is
UNAUTHENTICATED, health needs no token, a plaintext client gets UNAVAILABLE, and mTLS keyword
arguments (private_key / certificate_chain) reach a server that requires client certificates.

Environment: PRIMSERVE_SERVER (server binary; default build/server/primserve-server).
"""

import shutil
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import grpc

from primserve_test_server import SERVER, free_port, primserve
TOKEN = "py-token-123"


def make_certificates(d):
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    commands = [
        ["req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=py-test-ca",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "2", "-days", "2",
         "-extfile", "server.ext", "-out", "server.pem"],
        ["req", *key, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=py-client"],
        ["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "3", "-days", "2",
         "-extfile", "client.ext", "-out", "client.pem"],
    ]
    for command in commands:
        subprocess.run(["openssl", *command], cwd=d, check=True, capture_output=True)


class PythonSecurityTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("openssl is needed")
        cls.tmp = tempfile.TemporaryDirectory(prefix="primserve-pysec-")
        cls.dir = Path(cls.tmp.name)
        make_certificates(cls.dir)
        (cls.dir / "tokens").write_text(f"# tokens\n{TOKEN}\n")
        cls.ca = (cls.dir / "ca.pem").read_bytes()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def start(self, *flags):
        port, admin = free_port(), free_port()
        log = open(self.dir / f"server-{port}.log", "wb")
        server = subprocess.Popen(
            [SERVER, f"--address=127.0.0.1:{port}", f"--admin_address=127.0.0.1:{admin}",
             f"--model_dir={self.dir / 'models'}", f"--tls_cert={self.dir / 'server.pem'}",
             f"--tls_key={self.dir / 'server.key'}", *flags], stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (server.kill(), server.wait(), log.close()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", admin), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        with primserve.Client(f"127.0.0.1:{admin}") as probe:
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    if probe.health(timeout=1) == "SERVING":
                        return f"127.0.0.1:{port}"
                except primserve.Error:
                    time.sleep(0.05)
        self.fail("server did not start:\n" + (self.dir / f"server-{port}.log").read_text(errors="replace"))

    def test_tls_and_tokens(self):
        address = self.start(f"--auth_token_file={self.dir / 'tokens'}")
        with primserve.Client(address, timeout=10, root_certificates=self.ca, auth_token=TOKEN) as c:
            self.assertEqual(c.sinusoidal(2, dim=4).shape, (2, 4))
        for token in (None, "wrong"):
            with primserve.Client(address, timeout=10, root_certificates=self.ca, auth_token=token) as c:
                with self.assertRaises(primserve.Error) as e:
                    c.sinusoidal(2, dim=4)
                self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)
                self.assertEqual(c.health(), "SERVING")  # Health needs no token.
        with primserve.Client(address, timeout=10, auth_token=TOKEN) as plaintext:
            with self.assertRaises(primserve.Error) as e:
                plaintext.sinusoidal(2, dim=4)
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)
        with self.assertRaises(ValueError):
            primserve.Client(address, auth_token="two words")

    def test_mtls(self):
        address = self.start(f"--tls_client_ca={self.dir / 'ca.pem'}")
        with primserve.Client(address, timeout=10, root_certificates=self.ca,
                              private_key=(self.dir / "client.key").read_bytes(),
                              certificate_chain=(self.dir / "client.pem").read_text()) as c:
            self.assertEqual(c.sinusoidal(2, dim=4).shape, (2, 4))
        with primserve.Client(address, timeout=10, root_certificates=self.ca) as c:
            with self.assertRaises(primserve.Error) as e:
                c.sinusoidal(2, dim=4)
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)


if __name__ == "__main__":
    unittest.main()
