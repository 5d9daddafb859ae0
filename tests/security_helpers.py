"""Test material for the security tests, made at run time: a CA, server and client
certificates (PEM), an RSA key that signs JWTs for OAUTHBEARER, and the raw SASL requests
(SaslHandshake v1, SaslAuthenticate v1) for tests that drive the protocol by hand.

Everything uses the `cryptography` package (pinned in tests/requirements.txt)."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import kafkawire as kw


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _pem_cert(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str, ou: str | None = None, o: str | None = "shardlog-tests") -> x509.Name:
    attrs = []
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclass
class Ca:
    key: object
    cert: x509.Certificate
    path: Path

    def issue(self, directory: Path, stem: str, subject: x509.Name, server: bool, client_too: bool = False) -> tuple[Path, Path, Path]:
        """Returns (keystore PEM with key and chain, certificate PEM, key PEM). `client_too`: a
        server certificate that may also authenticate as a client (a broker's, which it
        presents to the brokers it connects to)."""
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client_too else [])), critical=False)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        keystore = directory / f"{stem}.keystore.pem"
        keystore.write_bytes(_pem_key(key) + _pem_cert(cert) + _pem_cert(self.cert))
        cert_path = directory / f"{stem}.cert.pem"
        cert_path.write_bytes(_pem_cert(cert))
        key_path = directory / f"{stem}.key.pem"
        key_path.write_bytes(_pem_key(key))
        return keystore, cert_path, key_path


def make_ca(directory: Path, name: str) -> Ca:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = _name(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(_pem_cert(cert))
    return Ca(key, cert, path)


@dataclass
class Pki:
    ca: Ca
    server_keystore: Path
    alice_cert: Path
    alice_key: Path
    rogue_cert: Path
    rogue_key: Path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "test-ca")
    server_keystore, _, _ = ca.issue(directory, "server", _name("localhost"), server=True)
    _, alice_cert, alice_key = ca.issue(directory, "alice", _name("Alice", ou="eng"), server=False)
    rogue_ca = make_ca(directory, "rogue-ca")
    _, rogue_cert, rogue_key = rogue_ca.issue(directory, "rogue", _name("Alice", ou="eng"), server=False)
    return Pki(ca, server_keystore, alice_cert, alice_key, rogue_cert, rogue_key)


# --- JWT (RS256) for OAUTHBEARER -------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JwtSigner:
    def __init__(self, directory: Path):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key_path = directory / "jwt-public.pem"
        self.public_key_path.write_bytes(
            self.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def token(self, sub: str, issuer: str, audience: str, lifetime_s: int = 600) -> tuple[str, float]:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT"}
        claims = {"sub": sub, "iss": issuer, "aud": audience, "iat": now, "exp": now + lifetime_s}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}", float(now + lifetime_s)


# --- raw SASL requests -----------------------------------------------------------------------

def sasl_handshake_v1(correlation_id: int, mechanism: str) -> bytes:
    return kw.frame(kw.request_header(17, 1, correlation_id) + kw.string(mechanism))


def sasl_authenticate_v1(correlation_id: int, auth_bytes: bytes) -> bytes:
    return kw.frame(kw.request_header(36, 1, correlation_id) + kw.kbytes(auth_bytes))


def parse_sasl_handshake_v1(body: bytes) -> tuple[int, list[str]]:
    (code,) = struct.unpack_from(">h", body, 0)
    (n,) = struct.unpack_from(">i", body, 2)
    pos, mechanisms = 6, []
    for _ in range(n):
        (length,) = struct.unpack_from(">h", body, pos)
        mechanisms.append(body[pos + 2 : pos + 2 + length].decode())
        pos += 2 + length
    return code, mechanisms


def parse_sasl_authenticate_v1(body: bytes) -> tuple[int, str | None, bytes, int]:
    (code,) = struct.unpack_from(">h", body, 0)
    (mlen,) = struct.unpack_from(">h", body, 2)
    pos = 4
    message = None
    if mlen >= 0:
        message = body[pos : pos + mlen].decode()
        pos += mlen
    (blen,) = struct.unpack_from(">i", body, pos)
    pos += 4
    auth = body[pos : pos + max(blen, 0)]
    pos += max(blen, 0)
    (lifetime,) = struct.unpack_from(">q", body, pos)
    return code, message, auth, lifetime


def client_ssl_context(ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    return ctx
