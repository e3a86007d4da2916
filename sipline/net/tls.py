"""The TLS side of every role (RFC 3261 §26, RFC 5630, RFC 5922): contexts and peers.

``Credentials`` is what ``[tls]`` names, loaded and checked: our certificate
and key (a missing file, or a key that does not match the certificate,
refuses the start naming the key), the server context every accepted
connection is handshaken with (TLS 1.2 or newer, ``ciphers``, no
compression or renegotiation), one client context per ``[[tls.peers]]``
entry and one for everyone else.

Peers (``[[tls.peers]]``) are known by their certificate: it must chain to
the peer's ``ca``, be issued by one of that file's certificates, and name
the peer's ``identity`` in its subjectAltName (DNS or URI) or, lacking one,
its subject CN. When we connect to a peer, its identity is the SNI and the
name checked (RFC 5922 §7.2); when one connects to us, ``identify`` says
which peer it proved to be, and a connection from a peer's ``hosts`` that
proves nothing is refused. A server of no peer's is verified against
``[tls] ca`` (the system's CAs without one), by the IP address we reach it at.

``reload`` loads every file again and swaps the contexts only when all of
them load: a renewal caught half-written (or a typo) keeps the old ones.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from typing import Any

from sipline.config import ConfigError
from sipline.logs import event
from sipline.peers import parse_peer

log = logging.getLogger("sipline.net.tls")

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# No TLS compression (CRIME), no renegotiation (a handshake's CPU on demand).
_OPTIONS = ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE

Name = tuple[tuple[tuple[str, str], ...], ...]  # a subject or issuer as getpeercert gives it


@dataclass(frozen=True, slots=True)
class Peer:
    """A ``[[tls.peers]]`` entry, loaded."""

    name: str
    identity: str
    hosts: tuple[tuple[str, int | None], ...]  # (IP, port or None); () = any address
    issuers: frozenset[Name]  # the subjects of the certificates in its ca file
    client: ssl.SSLContext  # to connect to it

    def at(self, host: str, port: int | None = None) -> bool:
        """One of its hosts (any port of an IP entry; ``port`` None: any entry of the IP)."""
        return any(h == host and (p is None or port is None or p == port) for h, p in self.hosts)

    def proved_by(self, cert: dict[str, Any]) -> bool:
        """``cert`` (verified, as getpeercert gives it) is this peer's."""
        return cert.get("issuer") in self.issuers and self.identity.lower() in names_of(cert)


def names_of(cert: dict[str, Any]) -> set[str]:
    """The DNS and URI subjectAltNames of ``cert``, or its CN when it has none (RFC 5922 §7.1)."""
    names = {
        value.lower() for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "URI")
    }
    if names:
        return names
    return {
        value.lower()
        for rdn in cert.get("subject", ())
        for key, value in rdn
        if key == "commonName"
    }


class Credentials:
    """``[tls]`` loaded (see the module's doc); ConfigError naming the key when it cannot be."""

    def __init__(self, tls: Any) -> None:
        self.settings = tls
        self.server, self.default_client, self.peers = _load(tls)
        self._stamps = _stamps(tls)

    def client(self, host: str, port: int) -> tuple[ssl.SSLContext, str, str | None]:
        """The context and server name to connect to ``host:port`` with, and the
        name of the peer the handshake proves it to be (None: no peer's)."""
        for peer in self.peers:
            if peer.at(host, port):
                return peer.client, peer.identity, peer.name
        return self.default_client, host, None

    def identify(self, cert: dict[str, Any] | None, host: str) -> tuple[str | None, bool]:
        """Who a connection from ``host`` with ``cert`` (verified; None or {}: none
        given) is: the name of the peer it proved to be, and whether it must be
        refused (it comes from a peer's hosts and proves to be none of them)."""
        claimed = False
        for peer in self.peers:
            if cert and peer.proved_by(cert) and (not peer.hosts or peer.at(host)):
                return peer.name, False
            claimed = claimed or peer.at(host)
        return None, claimed

    def changed(self) -> bool:
        """A file named in ``[tls]`` was modified (or replaced) since it was loaded."""
        return _stamps(self.settings) != self._stamps

    def reload(self) -> bool:
        """Load every file again; on any failure keep what is in use (logged), False."""
        stamps = _stamps(self.settings)
        try:
            loaded = _load(self.settings)
        except ConfigError as exc:
            self._stamps = stamps  # not tried again until a file changes again
            event(log, "tls_reload_failed", logging.ERROR, error=str(exc))
            return False
        self.server, self.default_client, self.peers = loaded
        self._stamps = stamps
        event(log, "tls_reloaded", certificate=self.settings.certificate, peers=len(self.peers))
        return True


def _load(tls: Any) -> tuple[ssl.SSLContext, ssl.SSLContext, tuple[Peer, ...]]:
    if not tls.certificate:
        raise ConfigError(
            'sip.transports has "tls": tls.certificate and tls.key must name our certificate'
            " and its private key (PEM files)"
        )
    server = _context(ssl.PROTOCOL_TLS_SERVER, tls)
    _chain(server, "tls", tls.certificate, tls.key)
    peers = tuple(_peer(tls, index, entry) for index, entry in enumerate(tls.peers))
    if peers:
        # A peer's certificate is asked for (and must verify if given); phones give none.
        server.verify_mode = ssl.CERT_OPTIONAL
        for index, entry in enumerate(tls.peers):
            _trust(server, f"tls.peers[{index}].ca", entry.ca)
    default_client = _context(ssl.PROTOCOL_TLS_CLIENT, tls)
    if tls.ca:
        _trust(default_client, "tls.ca", tls.ca)
    else:
        default_client.load_default_certs()
    return server, default_client, peers


def _peer(tls: Any, index: int, entry: Any) -> Peer:
    where = f"tls.peers[{index}]"
    client = _context(ssl.PROTOCOL_TLS_CLIENT, tls)
    issuers = _trust(client, f"{where}.ca", entry.ca)
    if entry.certificate:
        _chain(client, where, entry.certificate, entry.key or tls.key)
    else:
        _chain(client, "tls", tls.certificate, tls.key)  # mutual TLS with our own
    hosts = []
    for text in entry.hosts:
        host, port, _ = parse_peer(text)
        hosts.append((host, port))
    return Peer(entry.name, entry.identity, tuple(hosts), issuers, client)


def _context(protocol: int, tls: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = _VERSIONS[tls.min_version]
    context.options |= _OPTIONS
    try:
        context.set_ciphers(tls.ciphers)
    except ssl.SSLError:
        raise ConfigError(
            f"tls.ciphers = {tls.ciphers!r}: OpenSSL knows none of these ciphers"
        ) from None
    return context


def _chain(context: ssl.SSLContext, where: str, certificate: str, key: str) -> None:
    for name, path in (("certificate", certificate), ("key", key)):
        if not os.path.isfile(path):
            raise ConfigError(f"{where}.{name} = {path!r}: no such file")
    try:
        context.load_cert_chain(certificate, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            why = f"the key does not match the certificate {certificate!r}"
        else:
            why = f"not a PEM certificate and its private key ({exc.reason or exc})"
        raise ConfigError(f"{where}.key = {key!r}: {why}") from None
    except OSError as exc:
        raise ConfigError(f"{where}.certificate = {certificate!r}: {exc.strerror or exc}") from None


def _trust(context: ssl.SSLContext, key: str, path: str) -> frozenset[Name]:
    """Load the CA file named by ``key``; the subjects of every CA ``context`` trusts."""
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{key} = {path!r}: not a file of PEM certificates ({exc})") from None
    return frozenset(_freeze(ca["subject"]) for ca in context.get_ca_certs())


def _freeze(name: Any) -> Name:
    return tuple(tuple(tuple(pair) for pair in rdn) for rdn in name)


def _stamps(tls: Any) -> tuple[tuple[str, float, int], ...]:
    paths = [tls.certificate, tls.key, tls.ca]
    for entry in tls.peers:
        paths += [entry.ca, entry.certificate, entry.key]
    stamps = []
    for path in paths:
        if path:
            try:
                stat = os.stat(path)
                stamps.append((path, stat.st_mtime, stat.st_ino))
            except OSError:
                stamps.append((path, 0.0, 0))
    return tuple(stamps)
