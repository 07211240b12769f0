"""Per-region Kubernetes control planes on 127.0.0.1 for the ``k8s`` test tier.

Each region is a real, small cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (which plays the kubelet for a handful of fake nodes), built from
Go modules by ``hack/k8s-bin``. Nothing runs in containers and no node is real: pods get
scheduled and go ``Running`` because kwok says so, which is all the Kubernetes API, the
operator and the kubernetes target ever see.

Network safety (this machine may send packets to loopback addresses only):

- every listener is on 127.0.0.1, and node InternalIPs are 127.0.0.1;
- pod IPs and ClusterIPs cannot be loopback (EndpointSlice validation refuses them), so
  they come from 198.18.0.0/15, the range RFC 2544 reserves for benchmarking: never
  private, never routed, and no kube-proxy here routes them anyway;
- the only component that would ever dial a pod or Service IP is kube-apiserver (the
  pods/proxy and services/proxy subresources, service-backed webhooks and APIServices).
  Every process runs with HTTP(S)_PROXY pointing at a closed loopback port and NO_PROXY
  covering only 127.0.0.0/8, so such a dial fails on this machine instead of leaving it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_BIN_SCRIPT = REPO_ROOT / "hack" / "k8s-bin"
KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")

DEFAULT_REGIONS: tuple[str, ...] = ("us", "eu", "ap")
CONTEXT_PREFIX = "chaosaa-test-"
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
LOOPBACK = "127.0.0.1"
# The first address of --service-cluster-ip-range: the `kubernetes` Service's ClusterIP,
# which in-cluster clients would dial and so must be in the serving certificate.
SERVICE_CIDR = "198.19.0.0/16"
KUBERNETES_SERVICE_IP = "198.19.0.1"
# Pod IPs: one /20 of 198.18.0.0/16 per region (see the module docstring).
POD_SUPERNET = ipaddress.ip_network("198.18.0.0/16")
POD_PREFIX = 20
MAX_REGIONS = 2 ** (POD_PREFIX - POD_SUPERNET.prefixlen)
# Environment of every control-plane process: no proxy from our environment, and any dial
# that is not to loopback goes to a "proxy" on port 1, where nothing listens.
_PROCESS_ENV_OVERRIDES = {
    "HTTP_PROXY": f"http://{LOOPBACK}:1",
    "HTTPS_PROXY": f"http://{LOOPBACK}:1",
    "NO_PROXY": "127.0.0.0/8,localhost",
}


def process_env() -> dict[str, str]:
    proxy_vars = {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}
    env = {k: v for k, v in os.environ.items() if k.lower() not in proxy_vars}
    return env | _PROCESS_ENV_OVERRIDES


# Admin identity: system:masters bypasses RBAC, like kubeadm's admin.conf.
ADMIN_USER = "chaosaa-test-admin"
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or to become ready."""


class ForeignContextError(AssertionError):
    """A test tried to use a kube context (or server) that this fixture did not create."""


# --- binaries --------------------------------------------------------------------------


def find_bin_dir() -> Path:
    """Where hack/k8s-bin puts the binaries (``CHAOSAA_K8S_BIN_DIR`` overrides)."""
    override = os.environ.get("CHAOSAA_K8S_BIN_DIR")
    if override:
        return Path(override)
    out = subprocess.run(
        ["bash", str(K8S_BIN_SCRIPT), "--print-dir"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return Path(out.stdout.strip())


def missing_binaries(bin_dir: Path) -> list[str]:
    return [b for b in REQUIRED_BINARIES if not os.access(bin_dir / b, os.X_OK)]


# --- ports -----------------------------------------------------------------------------


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


# Where listen ports are picked: below the kernel's ephemeral range, so no outgoing
# connection (ours between regions, or anyone's on this shared machine) can take a port
# between the moment we pick it and the moment etcd/kube-apiserver bind it.
PORT_RANGE = (20000, 32000)


def free_ports(count: int, rng: random.Random | None = None) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that are free right now.

    Picked at random from PORT_RANGE (outside the ephemeral range) and checked by binding;
    all stay bound until every one is picked, so one call never repeats a port.
    """
    rng = rng or random.Random()
    low, high = PORT_RANGE
    eph_low, eph_high = _ephemeral_range()
    candidates = [p for p in range(low, high) if not eph_low <= p <= eph_high]
    rng.shuffle(candidates)
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for port in candidates:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            ports.append(port)
            if len(ports) == count:
                return ports
    raise ControlPlaneError(f"no {count} free ports in {PORT_RANGE}")


# --- PKI -------------------------------------------------------------------------------
# ECDSA P-256 throughout: key generation is ~1 ms (RSA-2048 is ~100 ms per key, and we
# need 7 keys per region). kube-apiserver accepts ES256 service-account signing keys.


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class CertificateAuthority:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(name, key, cert)

    @property
    def cert_pem(self) -> bytes:
        return _pem_cert(self.cert)

    @property
    def key_pem(self) -> bytes:
        return _pem_key(self.key)

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        server_names: Sequence[str] = (),
        server_ips: Sequence[str] = (),
    ) -> KeyPair:
        """A leaf certificate: a server certificate when names/IPs are given, else a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        is_server = bool(server_names or server_ips)
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [
                        ExtendedKeyUsageOID.SERVER_AUTH
                        if is_server
                        else ExtendedKeyUsageOID.CLIENT_AUTH
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        if is_server:
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return KeyPair(_pem_cert(cert), _pem_key(key))


# Never through an HTTP(S)_PROXY from the environment: everything is on 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- processes -------------------------------------------------------------------------

# setpriv --pdeathsig: if pytest itself is SIGKILLed (timeout, OOM, Ctrl-\), the kernel
# kills the control-plane processes too, instead of leaving 15 orphans eating 2 cores.
# The signal follows the *thread* that forked, so every Popen happens on the main thread.
_SETPRIV = shutil.which("setpriv")


@dataclass
class Process:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        prefix = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                prefix + self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=process_env(),
                # Own process group: a Ctrl-C in the terminal reaches pytest only, so the
                # fixture's teardown, not the signal, decides the shutdown order.
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise ControlPlaneError(
                f"{self.name} exited with {self.popen.returncode}; "
                f"last log lines ({self.log_path}):\n{self.log_tail()}"
            )

    def signal(self, sig: signal.Signals) -> None:
        if self.running:
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self.popen is None:
            return True
        try:
            self.popen.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return False
        return True


def _poll(
    what: str,
    check: Callable[[], bool],
    *,
    deadline: float,
    watch: Sequence[Process] = (),
    interval: float = 0.1,
) -> None:
    """Call ``check`` until it returns True; fail early if a watched process died."""
    last_error: Exception | None = None
    while True:
        for proc in watch:
            proc.check_alive()
        try:
            if check():
                return
        except Exception as exc:  # any failure means "not yet"
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            tails = "".join(f"\n--- {p.name} ({p.log_path}):\n{p.log_tail()}" for p in watch)
            raise ControlPlaneError(f"timed out waiting for {what}{detail}{tails}")
        time.sleep(interval)


# --- one region ------------------------------------------------------------------------


@dataclass
class RegionControlPlane:
    """One region's cluster. Paths and ports are fixed at construction; start() runs it."""

    region: str
    index: int
    root: Path
    bin_dir: Path
    nodes: int
    etcd_client_port: int
    etcd_peer_port: int
    apiserver_port: int
    processes: dict[str, Process] = field(default_factory=dict)
    _admin: KeyPair | None = None
    _ca: CertificateAuthority | None = None

    @property
    def context(self) -> str:
        return f"{CONTEXT_PREFIX}{self.region}"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def admin_cert_file(self) -> Path:
        return self.pki / "admin.crt"

    @property
    def admin_key_file(self) -> Path:
        return self.pki / "admin.key"

    @property
    def ca_pem(self) -> bytes:
        assert self._ca is not None
        return self._ca.cert_pem

    @property
    def admin(self) -> KeyPair:
        assert self._admin is not None
        return self._admin

    @property
    def pod_cidr(self) -> str:
        # Distinct per region, so a pod IP tells which region it came from.
        return str(list(POD_SUPERNET.subnets(new_prefix=POD_PREFIX))[self.index])

    # -- files

    def prepare(self) -> None:
        """Generate certificates, keys and kubeconfigs for every component."""
        for d in (self.pki, self.root / "etcd", self.root / "logs", self.root / "certs"):
            d.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority.create(f"chaosaa-test-{self.region}-ca")
        self._ca = ca
        self._write(self.ca_file, ca.cert_pem)
        self._write(self.pki / "ca.key", ca.key_pem)
        serving = ca.issue(
            "kube-apiserver",
            server_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            server_ips=[LOOPBACK, KUBERNETES_SERVICE_IP],
        )
        self._write(self.pki / "apiserver.crt", serving.cert_pem)
        self._write(self.pki / "apiserver.key", serving.key_pem)
        sa_key = ec.generate_private_key(ec.SECP256R1())
        self._write(self.pki / "sa.key", _pem_key(sa_key))
        self._write(
            self.pki / "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )
        self._admin = ca.issue(ADMIN_USER, organizations=["system:masters"])
        self._write(self.admin_cert_file, self._admin.cert_pem)
        self._write(self.admin_key_file, self._admin.key_pem)
        # The bootstrap RBAC policy binds these exact user names to the components' roles.
        identities = {
            "kube-controller-manager": ("system:kube-controller-manager", ()),
            "kube-scheduler": ("system:kube-scheduler", ()),
            # kwok writes node and pod status, leases and events for every fake node: it
            # stands in for all the kubelets, so it gets cluster-admin rather than the
            # per-node identities the Node authorizer expects.
            "kwok": ("kwok-controller", ("system:masters",)),
        }
        for component, (user, groups) in identities.items():
            pair = ca.issue(user, organizations=groups)
            self._write(self.root / f"{component}.kubeconfig", self.kubeconfig_yaml(user, pair))

    def _write(self, path: Path, data: bytes | str) -> None:
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(0o600)

    def kubeconfig_yaml(self, user: str, pair: KeyPair) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": self.context,
                        "cluster": {
                            "server": self.server,
                            "certificate-authority-data": _b64(self.ca_pem),
                        },
                    }
                ],
                "users": [
                    {
                        "name": user,
                        "user": {
                            "client-certificate-data": _b64(pair.cert_pem),
                            "client-key-data": _b64(pair.key_pem),
                        },
                    }
                ],
                "contexts": [
                    {"name": self.context, "context": {"cluster": self.context, "user": user}}
                ],
                "current-context": self.context,
            }
        )

    # -- processes

    def _proc(self, name: str, argv: list[str]) -> Process:
        proc = Process(
            name=f"{self.region}/{name}", argv=argv, log_path=self.root / "logs" / f"{name}.log"
        )
        self.processes[name] = proc
        return proc

    def etcd(self) -> Process:
        client = f"http://{LOOPBACK}:{self.etcd_client_port}"
        peer = f"http://{LOOPBACK}:{self.etcd_peer_port}"
        return self._proc(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--name=etcd-{self.region}",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                # A single-member cluster still needs a peer URL; it is never dialled.
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=etcd-{self.region}={peer}",
                "--initial-cluster-state=new",
                # Throw-away data: skipping fsync makes writes ~10x faster on a shared disk.
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=1073741824",
            ],
        )

    def apiserver(self) -> Process:
        pki = self.pki
        return self._proc(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://{LOOPBACK}:{self.etcd_client_port}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                # The `kubernetes` Service would get 127.0.0.1 as its endpoint, which the
                # Endpoints validation refuses (loopback); nothing in-cluster dials it here.
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={self.root / 'certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.ca_file}",
                "--authorization-mode=Node,RBAC",
                # ServiceAccount tokens: the apiserver signs (TokenRequest) and verifies
                # with this region's own key, so a token from one region is useless in
                # another, as between real clusters.
                f"--service-account-issuer=https://{self.context}.chaosaa.invalid",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # The agent DaemonSet (NET_ADMIN) must be admissible.
                "--allow-privileged=true",
                # APF's config bootstrapping is one of the slowest post-start hooks and
                # nothing here is ever overloaded enough to need it.
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--event-ttl=30m",
            ],
        )

    def controller_manager(self) -> Process:
        kubeconfig = self.root / "kube-controller-manager.kubeconfig"
        return self._proc(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                # No HTTPS endpoint (nothing scrapes it); readiness is observed through
                # the API instead (the `default` ServiceAccount appears).
                "--secure-port=0",
                # One instance per region: leader election would only add a lease round trip.
                "--leader-elect=false",
                # Each controller acts as its own ServiceAccount (as in kubeadm clusters),
                # which exercises TokenRequest and the bootstrap RBAC roles from the start.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                f"--cluster-signing-cert-file={self.ca_file}",
                f"--cluster-signing-key-file={self.pki / 'ca.key'}",
                f"--cluster-name={self.context}",
            ],
        )

    def scheduler(self) -> Process:
        return self._proc(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={self.root / 'kube-scheduler.kubeconfig'}",
                "--secure-port=0",
                "--leader-elect=false",
            ],
        )

    def kwok(self) -> Process:
        return self._proc(
            "kwok",
            [
                str(self.bin_dir / "kwok"),
                f"--kubeconfig={self.root / 'kwok.kubeconfig'}",
                f"--config={KWOK_STAGES}",
                # Only the nodes this fixture creates (annotated), never anything else.
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector={}={}".format(*KWOK_NODE_ANNOTATION),
                f"--cidr={self.pod_cidr}",
                f"--node-ip={LOOPBACK}",
                # Node Leases, renewed every quarter of this (as kwokctl runs it): the
                # heartbeat-with-lease stage writes node status only every ~10 min, so
                # without Leases the node lifecycle controller marks every node NotReady
                # each ~50 s -- and with it every pod Ready=False, which kwok (no kubelet
                # sync loop) never sets back. An OrderedReady StatefulSet then refuses to
                # scale down at all.
                "--node-lease-duration-seconds=40",
                # No kwok HTTP server (logs/exec emulation): with node-port 0 it binds
                # nothing, and the apiserver has no kubelet port to dial.
                "--node-port=0",
                "--server-address=",
            ],
        )

    # -- readiness

    def ssl_context(self) -> ssl.SSLContext:
        """TLS as the admin user, trusting only this region's CA."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        ctx.load_cert_chain(self.admin_cert_file, self.admin_key_file)
        return ctx

    def etcd_healthy(self) -> bool:
        url = f"http://{LOOPBACK}:{self.etcd_client_port}/health"
        with _DIRECT.open(url, timeout=2) as resp:
            return bool(json.load(resp).get("health") == "true")

    def apiserver_ready(self, ctx: ssl.SSLContext) -> bool:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
        )
        try:
            with opener.open(f"{self.server}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except urllib.error.HTTPError as err:
            err.close()
            return False

    def node_manifests(self) -> list[k8s.V1Node]:
        """The fake nodes: spread over zones <region>-a/b/c, annotated for kwok."""
        capacity = {"cpu": "32", "memory": "128Gi", "pods": "110"}
        nodes = []
        for i in range(self.nodes):
            name = f"{self.region}-node-{i}"
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                REGION_LABEL: self.region,
                ZONE_LABEL: f"{self.region}-{'abc'[i % 3]}",
            }
            nodes.append(
                k8s.V1Node(
                    metadata=k8s.V1ObjectMeta(
                        name=name,
                        labels=labels,
                        annotations={KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1]},
                    ),
                    # Node status may be set at creation (kubelets register this way);
                    # kwok's node-initialize stage keeps capacity and adds conditions.
                    status=k8s.V1NodeStatus(capacity=capacity, allocatable=capacity),
                )
            )
        return nodes

    def nodes_ready(self, core: k8s.CoreV1Api) -> bool:
        ready = 0
        for node in core.list_node(_request_timeout=5).items:
            conditions = (node.status.conditions if node.status else None) or []
            ready += any(c.type == "Ready" and c.status == "True" for c in conditions)
        return ready >= self.nodes

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM everything (etcd last, so the apiserver can shut down cleanly), then KILL."""
        order = ["kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
        for name in order:
            proc = self.processes.get(name)
            if proc is None:
                continue
            proc.signal(signal.SIGTERM)
            if not proc.wait(grace):
                proc.signal(signal.SIGKILL)
                proc.wait(5)


# --- all regions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Startup:
    """How long each phase of start() took, in seconds (for the docs and for regressions)."""

    phases: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.phases.values())


class ControlPlanes:
    """N regions' control planes, their kubeconfig, and guarded clients to reach them.

    Use as a context manager, or call start()/stop(). Clients are handed out only for
    contexts this object created, pointing at the servers it started.
    """

    def __init__(
        self,
        bin_dir: Path,
        regions: Sequence[str] = DEFAULT_REGIONS,
        *,
        nodes_per_region: int = 3,
        base_dir: Path | None = None,
        keep: bool = False,
        start_timeout: float = 120.0,
    ) -> None:
        if len(set(regions)) != len(regions) or not regions:
            raise ValueError(f"regions must be distinct and non-empty: {regions!r}")
        if len(regions) > MAX_REGIONS:
            raise ValueError(f"at most {MAX_REGIONS} regions (pod IP ranges), got {len(regions)}")
        self.bin_dir = bin_dir
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="chaosaa-k8s-"))
        self.keep = keep
        self.start_timeout = start_timeout
        self.kubeconfig = self.base_dir / "kubeconfig"
        self.nodes_per_region = nodes_per_region
        self.regions: dict[str, RegionControlPlane] = self._layout(regions)
        self._clients: list[k8s.ApiClient] = []
        self._lock = threading.Lock()
        self.startup: Startup | None = None

    def _layout(self, regions: Sequence[str]) -> dict[str, RegionControlPlane]:
        ports = free_ports(3 * len(regions))
        return {
            name: RegionControlPlane(
                region=name,
                index=i,
                root=self.base_dir / name,
                bin_dir=self.bin_dir,
                nodes=self.nodes_per_region,
                etcd_client_port=ports[3 * i],
                etcd_peer_port=ports[3 * i + 1],
                apiserver_port=ports[3 * i + 2],
            )
            for i, name in enumerate(regions)
        }

    def __enter__(self) -> ControlPlanes:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- identity and the guard

    @property
    def contexts(self) -> dict[str, str]:
        """Region name -> kube context name."""
        return {r: cp.context for r, cp in self.regions.items()}

    def context(self, region: str) -> str:
        return self.regions[region].context

    def server(self, region: str) -> str:
        return self.regions[region].server

    def assert_owned(self, context: str, server: str | None = None) -> RegionControlPlane:
        """Refuse (raise ForeignContextError) anything but a context this fixture created.

        Both the name and, when given, the server URL must match: a same-named context in
        someone's ~/.kube/config pointing at a real cluster is refused too.
        """
        for cp in self.regions.values():
            if cp.context == context:
                if server is not None and server.rstrip("/") != cp.server:
                    raise ForeignContextError(
                        f"context {context!r} points at {server!r}, not at this test "
                        f"fixture's apiserver {cp.server!r}; refusing to use it"
                    )
                return cp
        raise ForeignContextError(
            f"kube context {context!r} was not created by the test fixture "
            f"(ours: {sorted(self.contexts.values())}); refusing to use it"
        )

    def assert_owned_client(self, api_client: k8s.ApiClient) -> None:
        host = str(api_client.configuration.host).rstrip("/")
        if host not in {cp.server for cp in self.regions.values()}:
            raise ForeignContextError(f"client points at {host!r}, not at a test control plane")

    # -- clients

    def _configuration(self, cp: RegionControlPlane) -> k8s.Configuration:
        conf = k8s.Configuration()
        conf.host = cp.server
        conf.ssl_ca_cert = str(cp.ca_file)
        conf.verify_ssl = True
        return conf

    def _track(self, api_client: k8s.ApiClient) -> k8s.ApiClient:
        self.assert_owned_client(api_client)
        with self._lock:
            self._clients.append(api_client)
        return api_client

    def api_client(self, region_or_context: str) -> k8s.ApiClient:
        """An admin (system:masters) ApiClient for a region, from this fixture's kubeconfig."""
        context = (
            self.regions[region_or_context].context
            if region_or_context in self.regions
            else region_or_context
        )
        kubeconfig = yaml.safe_load(self.kubeconfig.read_text())
        entry = next((c for c in kubeconfig["contexts"] if c["name"] == context), None)
        if entry is None:
            raise ForeignContextError(f"kube context {context!r} is not in {self.kubeconfig}")
        cluster = next(
            c for c in kubeconfig["clusters"] if c["name"] == entry["context"]["cluster"]
        )
        cp = self.assert_owned(context, cluster["cluster"]["server"])
        conf = self._configuration(cp)
        conf.cert_file = str(cp.admin_cert_file)
        conf.key_file = str(cp.admin_key_file)
        return self._track(k8s.ApiClient(conf))

    def token_client(self, region: str, token: str) -> k8s.ApiClient:
        """An ApiClient for a region that authenticates with a bearer token only."""
        cp = self.regions[region]
        conf = self._configuration(cp)
        conf.api_key = {"authorization": token}
        conf.api_key_prefix = {"authorization": "Bearer"}
        return self._track(k8s.ApiClient(conf))

    def service_account_token(
        self, region: str, namespace: str, name: str, *, seconds: int = 3600
    ) -> str:
        """A bound token for ServiceAccount ``namespace/name`` (TokenRequest API)."""
        core = k8s.CoreV1Api(self.api_client(region))
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
        )
        resp = core.create_namespaced_service_account_token(name, namespace, request)
        assert resp.status is not None
        return str(resp.status.token)

    def service_account_client(self, region: str, namespace: str, name: str) -> k8s.ApiClient:
        """An ApiClient acting as ServiceAccount ``namespace/name`` (which must exist)."""
        return self.token_client(region, self.service_account_token(region, namespace, name))

    # -- lifecycle

    def _parallel(self, fn: Callable[[RegionControlPlane], None]) -> None:
        with ThreadPoolExecutor(max_workers=len(self.regions)) as pool:
            for fut in [pool.submit(fn, cp) for cp in self.regions.values()]:
                fut.result()

    def start(self, attempts: int = 3) -> Startup:
        """Start every region; on a port conflict, start over on fresh ports.

        Ports are checked free when picked, but on a shared machine another process can
        still bind one before etcd or kube-apiserver does.
        """
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except ControlPlaneError as exc:
                if "address already in use" not in str(exc) or attempt == attempts:
                    self.stop()
                    raise
                self._stop_processes()
                for cp in self.regions.values():
                    shutil.rmtree(cp.root, ignore_errors=True)
                self.regions = self._layout(list(self.regions))
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start_once(self) -> Startup:
        """Start every region in lock-step phases; waits happen in parallel threads.

        Processes are spawned only from the calling thread (see _SETPRIV); per phase the
        slowest region sets the pace, which costs little since they are identical.
        """
        deadline = time.monotonic() + self.start_timeout
        phases: dict[str, float] = {}
        t = time.monotonic()

        def mark(phase: str) -> None:
            nonlocal t
            now = time.monotonic()
            phases[phase] = round(now - t, 2)
            t = now

        self._parallel(RegionControlPlane.prepare)
        self._write_kubeconfig()
        mark("pki")

        for cp in self.regions.values():
            cp.etcd().start()
        self._parallel(
            lambda cp: _poll(
                f"{cp.region} etcd",
                cp.etcd_healthy,
                deadline=deadline,
                watch=[cp.processes["etcd"]],
            )
        )
        mark("etcd")

        for cp in self.regions.values():
            cp.apiserver().start()

        def wait_apiserver(cp: RegionControlPlane) -> None:
            ctx = cp.ssl_context()
            _poll(
                f"{cp.region} kube-apiserver /readyz",
                lambda: cp.apiserver_ready(ctx),
                deadline=deadline,
                watch=[cp.processes["etcd"], cp.processes["kube-apiserver"]],
                interval=0.2,
            )

        self._parallel(wait_apiserver)
        mark("apiserver")

        for cp in self.regions.values():
            cp.controller_manager().start()
            cp.scheduler().start()
            cp.kwok().start()
        self._parallel(lambda cp: self._wait_cluster(cp, deadline))
        mark("controllers+nodes")
        self.startup = Startup(phases)
        return self.startup

    def _wait_cluster(self, cp: RegionControlPlane, deadline: float) -> None:
        core = k8s.CoreV1Api(self.api_client(cp.region))
        for node in cp.node_manifests():
            core.create_node(node)
        watch = list(cp.processes.values())
        _poll(
            f"{cp.region} kwok nodes Ready",
            lambda: cp.nodes_ready(core),
            deadline=deadline,
            watch=watch,
        )

        def default_sa() -> bool:
            try:
                core.read_namespaced_service_account("default", "default", _request_timeout=5)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        # The `default` ServiceAccount is made by the controller manager's
        # serviceaccount controller: once it exists, the controllers are running and pods
        # can be admitted in the default namespace.
        _poll(f"{cp.region} kube-controller-manager", default_sa, deadline=deadline, watch=watch)

    def _write_kubeconfig(self) -> None:
        clusters, users, contexts = [], [], []
        for cp in self.regions.values():
            clusters.append(
                {
                    "name": cp.context,
                    "cluster": {"server": cp.server, "certificate-authority-data": _b64(cp.ca_pem)},
                }
            )
            users.append(
                {
                    "name": f"{cp.context}-admin",
                    "user": {
                        "client-certificate-data": _b64(cp.admin.cert_pem),
                        "client-key-data": _b64(cp.admin.key_pem),
                    },
                }
            )
            contexts.append(
                {
                    "name": cp.context,
                    "context": {"cluster": cp.context, "user": f"{cp.context}-admin"},
                }
            )
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": clusters,
            "users": users,
            "contexts": contexts,
            "current-context": contexts[0]["name"],
        }
        self.kubeconfig.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def leftover_processes(self) -> list[tuple[int, str]]:
        """Processes whose command line mentions our base dir: ours, if any survive."""
        marker = str(self.base_dir)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
            if marker in cmdline:
                found.append((int(entry.name), cmdline.strip()))
        return found

    def _stop_processes(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()  # type: ignore[no-untyped-call]
        with ThreadPoolExecutor(max_workers=len(self.regions)) as pool:
            list(pool.map(RegionControlPlane.stop, self.regions.values()))

    def stop(self) -> None:
        """Stop every process, verify none is left, then remove the files (unless keep)."""
        self._stop_processes()
        leftovers = self.leftover_processes()
        for pid, _ in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not self.keep:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        if leftovers:
            raise ControlPlaneError(f"processes survived shutdown (now killed): {leftovers}")

    def processes(self) -> Iterator[Process]:
        for cp in self.regions.values():
            yield from cp.processes.values()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.k8s.controlplane [REGION...]``: run the control planes until Ctrl-C.

    For poking at them by hand with the kubectl that hack/k8s-bin built.
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("regions", nargs="*", default=list(DEFAULT_REGIONS))
    parser.add_argument("--nodes", type=int, default=3, help="fake nodes per region")
    args = parser.parse_args(argv)
    bin_dir = find_bin_dir()
    if absent := missing_binaries(bin_dir):
        print(f"missing in {bin_dir}: {', '.join(absent)}; run hack/k8s-bin")
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ControlPlanes(bin_dir, args.regions, nodes_per_region=args.nodes) as planes:
        assert planes.startup is not None
        print(
            f"started {', '.join(planes.regions)} in {planes.startup.total:.1f}s\n"
            f"export KUBECONFIG={planes.kubeconfig}\n"
            f"export PATH={bin_dir}:$PATH\n"
            f"kubectl --context {planes.context(args.regions[0])} get nodes -L {REGION_LABEL}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
