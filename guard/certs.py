"""Development certificates: a private CA, a server certificate and client certificates.

``guard certs init`` writes into a git-ignored directory (default ``dev/certs``)::

    ca.pem  ca.key          the dev CA (the key stays here to issue more client certificates)
    server.pem server.key   for [tls] certfile/keyfile; SANs localhost, 127.0.0.1, ::1 (+ --host)
    client.pem client.key   a client certificate for mTLS (subject ``CN=client,O=guard dev``)

``guard certs client NAME`` issues another client certificate from that CA and
``guard certs show FILE`` prints a certificate's subject exactly as guard hands it to
policy and audit (``Principal.client_cert_subject``, RFC 4514).

These are for development and tests only: keys are unencrypted (mode 0600) and the CA
has no revocation. Production certificates come from your PKI. Private keys must never
be committed (``*.pem`` and ``*.key`` are git-ignored; the command warns when the target
directory is not).

Why ``cryptography.hazmat`` here and not in :mod:`guard.crypto`: building X.509
certificates needs key objects, and this module is tooling that runs outside the proxy.
The runtime cryptography (PII encryption, audit signatures) stays in :mod:`guard.crypto`.
Clock and key generation are injectable so tests are deterministic.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DIR = Path("dev/certs")
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_DAYS = 365
RESERVED_NAMES = frozenset({"ca", "server"})
ORGANIZATION = "guard dev"
KeyFactory = Callable[[], ec.EllipticCurvePrivateKey]


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (fast to make, accepted by every TLS stack guard talks to)."""
    return ec.generate_private_key(ec.SECP256R1())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def subject(self) -> str:
        """The subject as RFC 4514, as guard reports it in ``Principal.client_cert_subject``."""
        return self.cert.subject.rfc4514_string()

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _validity(now: dt.datetime, days: int, not_after_cap: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    if days <= 0:
        raise ValueError("days must be positive")
    start = now - dt.timedelta(minutes=5)  # tolerate small clock skew between machines
    end = now + dt.timedelta(days=days)
    if not_after_cap is not None and end > not_after_cap:
        end = not_after_cap
    return start, end


def create_ca(common_name: str = "guard dev CA", *, now: dt.datetime | None = None, days: int = DEFAULT_DAYS,
              key_factory: KeyFactory = new_key) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = key_factory()
    start, end = _validity(now or utcnow(), days, None)
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _leaf(ca: Issued, common_name: str, usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None,
          now: dt.datetime | None, days: int, key_factory: KeyFactory) -> Issued:
    key = key_factory()
    start, end = _validity(now or utcnow(), days, ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def issue_server(ca: Issued, hosts: Sequence[str] = DEFAULT_HOSTS, *, now: dt.datetime | None = None,
                 days: int = DEFAULT_DAYS, key_factory: KeyFactory = new_key) -> Issued:
    """A TLS server certificate for ``hosts`` (DNS names or IP addresses, all in subjectAltName)."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host")
    return _leaf(ca, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, _san(hosts), now, days, key_factory)


def issue_client(ca: Issued, name: str, *, now: dt.datetime | None = None, days: int = DEFAULT_DAYS,
                 key_factory: KeyFactory = new_key) -> Issued:
    """A TLS client certificate with subject ``CN=<name>,O=guard dev``."""
    if not name or any(c in name for c in "/\\\0") or name.startswith("."):
        raise ValueError("a client name must be non-empty and contain no path separators")
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is the file name of the CA or server certificate; choose another")
    return _leaf(ca, name, ExtendedKeyUsageOID.CLIENT_AUTH, None, now, days, key_factory)


# Files -------------------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def write_issued(directory: Path, stem: str, issued: Issued, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``<stem>.pem`` (0644) and ``<stem>.key`` (0600); refuses to overwrite unless asked."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    _write(key_path, issued.key_pem(), 0o600, overwrite)
    _write(cert_path, issued.cert_pem(), 0o644, overwrite)
    return cert_path, key_path


def load_issued(directory: Path, stem: str) -> Issued:
    """Read back ``<stem>.pem`` and ``<stem>.key``."""
    cert = x509.load_pem_x509_certificate((directory / f"{stem}.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / (stem + '.key')}: not an EC private key made by guard certs")
    return Issued(cert, key)


@dataclass(frozen=True)
class DevCerts:
    """Paths of a development certificate set."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]]


def create_dev_certs(directory: Path = DEFAULT_DIR, hosts: Sequence[str] = DEFAULT_HOSTS,
                     clients: Sequence[str] = ("client",), *, now: dt.datetime | None = None,
                     days: int = DEFAULT_DAYS, overwrite: bool = False,
                     key_factory: KeyFactory = new_key) -> DevCerts:
    """Create a dev CA, a server certificate and one client certificate per name in ``directory``."""
    if not overwrite:
        existing = [p for p in (directory / "ca.pem", directory / "ca.key") if p.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} exists (use --force to replace the whole set)")
    ca = create_ca(now=now, days=days, key_factory=key_factory)
    ca_paths = write_issued(directory, "ca", ca, overwrite=overwrite)
    server_paths = write_issued(directory, "server", issue_server(ca, hosts, now=now, days=days,
                                                                  key_factory=key_factory), overwrite=overwrite)
    issued = {
        name: write_issued(directory, name, issue_client(ca, name, now=now, days=days, key_factory=key_factory),
                           overwrite=overwrite)
        for name in clients
    }
    return DevCerts(directory, *ca_paths, *server_paths, issued)


def subject_of(pem: bytes) -> str:
    """The subject (RFC 4514) of a PEM certificate."""
    return x509.load_pem_x509_certificate(pem).subject.rfc4514_string()


def git_ignored(path: Path) -> bool | None:
    """Whether git ignores ``path`` (``None`` when it is not in a git work tree or git is absent)."""
    git = shutil.which("git")
    if git is None:
        return None
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        inside = subprocess.run([git, "-C", str(probe), "rev-parse", "--is-inside-work-tree"],
                                capture_output=True, text=True, timeout=10, check=False)
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return None
        result = subprocess.run([git, "-C", str(probe), "check-ignore", "-q", str((path / "x.key").resolve())],
                                capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.returncode == 0


# CLI ---------------------------------------------------------------------------------------


def _warn_if_tracked(directory: Path) -> None:
    if git_ignored(directory) is False:
        print(f"warning: {directory} is inside a git work tree and not ignored: never commit the *.key files",
              file=sys.stderr)


def cmd_init(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    hosts = list(dict.fromkeys([*DEFAULT_HOSTS, *args.host]))
    try:
        made = create_dev_certs(directory, hosts, args.client or ["client"], days=args.days, overwrite=args.force)
    except (FileExistsError, ValueError) as exc:
        print(f"guard certs init: {exc}", file=sys.stderr)
        return 2
    _warn_if_tracked(directory)
    print(f"dev CA:  {made.ca_cert} (key {made.ca_key})")
    print(f"server:  {made.server_cert} (key {made.server_key}) for {', '.join(hosts)}")
    for cert, key in made.clients.values():
        print(f"client:  {cert} (key {key}) subject {subject_of(cert.read_bytes())}")
    print("\n[tls]\n"
          f'certfile = "{made.server_cert.resolve()}"\n'
          f'keyfile = "{made.server_key.resolve()}"\n'
          f'client_ca = "{made.ca_cert.resolve()}"   # remove for TLS without client certificates')
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    try:
        ca = load_issued(directory, "ca")
        cert, key = write_issued(directory, args.name, issue_client(ca, args.name, days=args.days),
                                 overwrite=args.force)
    except FileNotFoundError as exc:
        print(f"guard certs client: {exc.filename} not found (run 'guard certs init' first)", file=sys.stderr)
        return 2
    except (FileExistsError, ValueError) as exc:
        print(f"guard certs client: {exc}", file=sys.stderr)
        return 2
    _warn_if_tracked(directory)
    print(f"client:  {cert} (key {key}) subject {subject_of(cert.read_bytes())}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    try:
        cert = x509.load_pem_x509_certificate(Path(args.file).read_bytes())
    except (OSError, ValueError) as exc:
        print(f"guard certs show: cannot read a PEM certificate from {args.file}: {exc}", file=sys.stderr)
        return 2
    print(f"subject:    {cert.subject.rfc4514_string()}")
    print(f"issuer:     {cert.issuer.rfc4514_string()}")
    print(f"not before: {cert.not_valid_before_utc.isoformat()}")
    print(f"not after:  {cert.not_valid_after_utc.isoformat()}")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(v) for v in san.get_values_for_type(x509.DNSName)]
        names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
        print(f"alt names:  {', '.join(names)}")
    except x509.ExtensionNotFound:
        pass
    print(f"sha256:     {cert.fingerprint(hashes.SHA256()).hex(':')}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``guard certs init|client|show``."""
    certs = subparsers.add_parser("certs", help="development TLS certificates (dev CA, server, clients)")
    sub = certs.add_subparsers(dest="certs_command", metavar="ACTION", required=True)

    p = sub.add_parser("init", help="create a dev CA, a server certificate and client certificates")
    p.add_argument("--dir", default=str(DEFAULT_DIR), help="output directory (default: %(default)s, git-ignored)")
    p.add_argument("--host", action="append", default=[],
                   help="extra DNS name or IP for the server certificate (repeatable; localhost, 127.0.0.1 "
                        "and ::1 are always included)")
    p.add_argument("--client", action="append", default=[],
                   help="client certificate name (repeatable; default: client)")
    p.add_argument("--days", type=int, default=DEFAULT_DAYS, help="validity in days (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing set")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("client", help="issue another client certificate from the dev CA")
    p.add_argument("name", help="common name; files are NAME.pem and NAME.key")
    p.add_argument("--dir", default=str(DEFAULT_DIR), help="directory holding ca.pem/ca.key (default: %(default)s)")
    p.add_argument("--days", type=int, default=DEFAULT_DAYS, help="validity in days (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing certificate of that name")
    p.set_defaults(func=cmd_client)

    p = sub.add_parser("show", help="print a certificate's subject (as policy sees it), issuer and validity")
    p.add_argument("file", help="PEM certificate")
    p.set_defaults(func=cmd_show)
