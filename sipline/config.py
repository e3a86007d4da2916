"""Node configuration: a TOML file, overridable by ``SIPLINE_<SECTION>__<KEY>`` env vars.

``load_settings(path)`` reads and validates everything at start-up; any problem
becomes a ``ConfigError`` whose message names the key, the value given and what
was expected, so a node never starts half-configured.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from sipline import __version__
from sipline.peers import CERTIFICATE, certified_name, parse_peer
from sipline.sip.headers import split_host_port as parse_host_port

ENV_PREFIX = "SIPLINE_"
ENV_DELIMITER = "__"

# Where the settings last loaded came from (a config file, or the defaults), for the
# messages of commands that refuse (a process loads one configuration).
loaded_from = "defaults and environment"

# The file for the TomlConfigSettingsSource of the Settings being built right now;
# settings_customise_sources is a classmethod, so the path cannot travel as an argument.
_toml_path: ContextVar[Path | None] = ContextVar("sipline_toml_path", default=None)


class ConfigError(Exception):
    """The configuration cannot be used; the message is meant for the operator."""


# Where commands look for their config file when none is given (``find_config``).
DEFAULT_CONFIG = "configs/single.toml"
CONFIG_ENV = "SIPLINE_CONFIG"
# The repository sipline runs from (an editable install, as `make` makes): its
# configs/single.toml is the last resort, so a command run from any directory
# finds the database `make run` uses.
REPO = Path(__file__).resolve().parents[1]


def find_config(given: str | None) -> tuple[Path, Path]:
    """The config file to use and the directory its relative paths start from:
    ``given`` (--config), else ``$SIPLINE_CONFIG``, else ./configs/single.toml
    (relative paths from the working directory), else the installed
    repository's (relative paths from the repository, where `make run` runs)."""
    cwd = Path.cwd()
    if given:
        return Path(given), cwd
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]), cwd
    if (cwd / DEFAULT_CONFIG).is_file():
        return Path(DEFAULT_CONFIG), cwd
    if (REPO / DEFAULT_CONFIG).is_file():
        return REPO / DEFAULT_CONFIG, REPO
    raise ConfigError(
        f"no config file: none given (--config PATH or ${CONFIG_ENV}), no ./{DEFAULT_CONFIG}"
        f" here ({cwd}) nor in the installed repository ({REPO})"
    )


def anchored(settings: Settings, base: Path) -> Settings:
    """``settings`` with its relative paths (``node.data_dir``, a relative SQLite
    file) made absolute from ``base``: a node's children, and messages, then
    name the same files wherever they run."""
    node, database = settings.node, settings.database
    updates: dict[str, Any] = {}
    if not node.data_dir.is_absolute():
        updates["node"] = node.model_copy(update={"data_dir": base / node.data_dir})
    if database.url.startswith("sqlite:///") and not database.url.startswith("sqlite:////"):
        url = "sqlite:///" + str(base / database.url.removeprefix("sqlite:///"))
        updates["database"] = database.model_copy(update={"url": url})
    return settings.model_copy(update=updates) if updates else settings


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("expected an IPv4 or IPv6 address") from None
    return value


def _optional_ip(value: str) -> str:
    return _ip_address(value) if value else value


def _database_url(value: str) -> str:
    if not value.startswith(("sqlite://", "mysql://")):
        raise ValueError("expected a URL starting with sqlite:// or mysql://")
    return value


def _empty_is_none(value: Any) -> Any:
    # TOML has no null, and an env var cannot be unset from inside a file: "" means "none".
    return None if value == "" else value


def _redis_url(value: str | None) -> str | None:
    from sipline.storage.live import check_redis_url

    return None if value is None else check_redis_url(value)


def _optional_ip_address(value: str) -> str:
    return _ip_address(value) if value else value


def _ip_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError("expected an IP address or network, such as 10.0.0.0/8") from None
    return value


IPAddress = Annotated[str, AfterValidator(_ip_address)]
IPNetwork = Annotated[str, AfterValidator(_ip_network)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeSection(Section):
    # Unique among the nodes sharing a database or Redis; "" = ROLE@HOST:PORT.
    # 64 characters at most: it is stored with each binding and CDR.
    name: Annotated[str, Field(max_length=64)] = ""
    data_dir: Path = Path("./data")
    drain_timeout: Annotated[float, Field(ge=0)] = 5.0
    # The Retry-After (seconds) of the 503s a node drained by an admin answers new work with.
    drain_retry_after: Annotated[int, Field(ge=0, le=86400)] = 60
    # Processes of the proxy on its one address (SO_REUSEPORT), under a supervisor;
    # 0 = one per core when [redis] url is set (workers share bindings, nonce
    # counts and bans through it), else 1; 1 = one process (sipline.net.workers).
    workers: Annotated[int, Field(ge=0, le=64)] = 0


class SipSection(Section):
    host: IPAddress = "127.0.0.1"
    port: Port = 5060
    # The address put in Via, Record-Route and Contact when ``host`` is a
    # wildcard (0.0.0.0, ::) or the node sits behind a 1:1 NAT; "" = ``host``.
    advertised_host: Annotated[str, AfterValidator(_optional_ip)] = ""
    transports: Annotated[list[Literal["udp", "tcp", "tls"]], Field(min_length=1)] = ["udp", "tcp"]
    # The TLS listener's port (with "tls" in transports); 0 = port + 1 (5061 for 5060).
    tls_port: Annotated[int, Field(ge=0, le=65535)] = 0
    max_message_bytes: Annotated[int, Field(ge=1024)] = 65535
    tcp_idle_timeout: Seconds = 300.0
    trace: bool = False
    server_header: str = f"sipline/{__version__}"
    # Server transactions held at once (lingering ones included), in total and
    # per source IP address; over either, a request gets a stateless 503 with
    # Retry-After. Trusted peers (Handler.trusts) are held to the total only.
    max_transactions: Annotated[int, Field(ge=1)] = 100_000
    max_transactions_per_source: Annotated[int, Field(ge=1)] = 500


class LimitsSection(Section):
    """What one source may cost a SIP node (every role): flood limits in the
    manner of Kamailio's pike, bans (its ipban), auth-failure bans (fail2ban's
    SIP jails) and TCP limits. Trusted peers (``Handler.trusts``) are exempt."""

    # Messages (requests and responses) one source IP may send per window; the
    # one over it is dropped and the source banned for flood_ban. 0 = no limit.
    flood_window: Seconds = 2.0
    flood_density: Annotated[int, Field(ge=0)] = 200
    flood_ban: Seconds = 300.0
    # IPv6 sources are counted and banned by prefix: one host holds a whole /64.
    ipv6_prefix: Annotated[int, Field(ge=32, le=128)] = 64
    # Sources counted at once; at the cap new ones go uncounted until a prune.
    max_sources: Annotated[int, Field(ge=16)] = 65536
    # Failed digest authentications from one source within auth_window that ban
    # it for auth_ban. 0 = never.
    auth_failures: Annotated[int, Field(ge=0)] = 5
    auth_window: Seconds = 600.0
    auth_ban: Seconds = 600.0
    # Bans a node makes and keeps at once (a flood from many addresses).
    max_bans: Annotated[int, Field(ge=16)] = 65536
    # Without [redis]: seconds between looks at the bans table (sipline ban ...).
    ban_poll: Seconds = 5.0
    # Accepted TCP connections in all and per source IP; over either the new one is closed.
    tcp_max_connections: Annotated[int, Field(ge=1)] = 4096
    tcp_max_connections_per_ip: Annotated[int, Field(ge=1)] = 64
    # Seconds a message (and a new connection's first one) may take to arrive whole.
    tcp_read_timeout: Seconds = 20.0


class LogSection(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsSection(Section):
    """The node's HTTP port: /metrics, /status and the admin actions (sipline.net.admin)."""

    host: IPAddress = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535, description="0: any free port")] = 0


class AdminSection(Section):
    # Key of the tokens that authorise admin actions (drain, resume, config pushes).
    # "" = one derived from auth.secret, else a key file in node.data_dir (one box).
    secret: str = ""
    # Seconds between the safety-net reloads of the configuration (changes are pushed).
    config_poll: Annotated[float, Field(ge=1)] = 60.0
    # Seconds an operator command waits for each node to confirm a pushed change.
    push_timeout: Annotated[float, Field(gt=0, le=60)] = 2.0


class DatabaseSection(Section):
    url: Annotated[str, AfterValidator(_database_url)] = "sqlite:///data/sipline.db"


class RedisSection(Section):
    # redis://host:port/db, or through Sentinel (follows a promoted master):
    # redis+sentinel://[:password@]host:port,host:port/mastername/db
    url: Annotated[
        str | None, BeforeValidator(_empty_is_none), AfterValidator(_redis_url)
    ] = None


def _host_port(value: str) -> str:
    try:
        host, port = split_host_port(value)
    except ValueError:
        raise ValueError("expected HOST:PORT, such as 127.0.0.1:5070 or [::1]:5070") from None
    if port == 0:
        raise ValueError("expected HOST:PORT, such as 127.0.0.1:5070 or [::1]:5070")
    _ip_address(host)
    return value


def split_host_port(value: str, default_port: int | None = None) -> tuple[str, int]:
    """HOST:PORT (a setting, a gateway's address; a next hop's ``;params`` left
    out) as (host without IPv6 brackets, port), by the SIP grammar's parser
    (``sipline.sip.headers.split_host_port``); ``default_port`` when it names
    none, else ValueError."""
    host, port = parse_host_port(value.partition(";")[0])
    if port is None:
        if default_port is None:
            raise ValueError(f"{value!r} names no port")
        port = default_port
    return host.strip("[]"), port


HostPort = Annotated[str, AfterValidator(_host_port)]
_HOP_TRANSPORTS = ("transport=udp", "transport=tcp", "transport=tls")


def _hop(value: str) -> str:
    where, _, param = value.partition(";")
    _host_port(where)
    if param and param.strip().lower() not in _HOP_TRANSPORTS:
        raise ValueError(
            "expected HOST:PORT, optionally with ;transport=udp, tcp or tls,"
            " such as 127.0.0.1:5071;transport=tls"
        )
    return value


def split_hop(value: str) -> tuple[str, str, int]:
    """A validated next hop setting as (transport, host, port): UDP unless it says."""
    param = value.partition(";")[2].strip().lower()
    return (param[10:].upper() if param else "UDP", *split_host_port(value))


# A next hop we send to: HOST:PORT, ";transport=tcp" (or tls) to reach it over that.
Hop = Annotated[str, AfterValidator(_hop)]


def _peer(value: str) -> str:
    if value.startswith(CERTIFICATE):
        certified_name(value)
    else:
        parse_peer(value)
    return value


# A trusted peer (sipline.peers): IP (any port), IP:PORT or [IPv6]:PORT, and
# ";transport=tcp" (or udp, tls) to trust it on that transport only; or "tls:NAME",
# the [[tls.peers]] entry NAME, by its certificate.
Peer = Annotated[str, AfterValidator(_peer)]


def _readable(value: str) -> str:
    if value and not Path(value).is_file():
        raise ValueError("no such file (or not a regular file)")
    return value


# A PEM file that must exist when named; "" = none.
PemFile = Annotated[str, AfterValidator(_readable)]


class TlsPeer(Section):
    """A ``[[tls.peers]]`` entry: a peer (a carrier, another node of ours) known by its
    certificate over TLS (sipline.net.tls): it must chain to ``ca``, be issued by
    one of its certificates, and name ``identity`` in its subjectAltName (or CN)."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]
    # The DNS name (or URI) its certificate must carry; also the SNI and the name
    # checked when we connect to it (RFC 5922 §7).
    identity: Annotated[str, Field(min_length=1)]
    ca: Annotated[PemFile, Field(min_length=1)]
    # Where it connects from and is reached at: IP or IP:PORT entries; [] = any address
    # (it is known by its certificate alone). A connection from one of these hosts whose
    # certificate does not prove this identity is refused.
    hosts: list[Peer] = []
    # Our client certificate toward it; "" = [tls] certificate and key.
    certificate: PemFile = ""
    key: PemFile = ""


class TlsSection(Section):
    """SIP over TLS (RFC 3261 §26, RFC 5630), with "tls" in ``[sip] transports``."""

    certificate: PemFile = ""
    key: PemFile = ""
    # CAs that verify the servers we connect to that no peer names; "" = the system's.
    ca: PemFile = ""
    min_version: Literal["1.2", "1.3"] = "1.2"
    # OpenSSL cipher list of TLS 1.2 (TLS 1.3 suites are all AEAD and left to OpenSSL).
    ciphers: Annotated[str, Field(min_length=1)] = "ECDHE+AESGCM:ECDHE+CHACHA20"
    # Seconds between looks at the files' modification times (a renewed certificate is
    # taken without a restart, as on SIGHUP); 0 = on SIGHUP only.
    watch_interval: Annotated[float, Field(ge=0)] = 60.0
    peers: list[TlsPeer] = []

    @model_validator(mode="after")
    def _pairs(self) -> TlsSection:
        if bool(self.certificate) != bool(self.key):
            raise ValueError("certificate and key go together: set both or neither")
        names = [peer.name for peer in self.peers]
        if len(set(names)) != len(names):
            raise ValueError("every [[tls.peers]] entry needs a name of its own")
        return self


def _optional_host_port(value: str) -> str:
    return _host_port(value) if value else value


class ProxySection(Section):
    """The edge proxy and registrar (``sipline proxy``)."""

    domains: Annotated[list[str], Field(min_length=1)] = ["example.com"]
    # Peers whose requests are not challenged and whose identity headers are
    # believed (the B2BUA, the ACR nodes sending inbound DID calls); see sipline.peers.
    trusted: list[Peer] = ["127.0.0.1:5070", "127.0.0.1:5080", "127.0.0.1:5082"]
    # Where calls to anything that is not one of our subscribers go (";transport=tls" ...).
    b2bua: list[Hop] = ["127.0.0.1:5070"]
    record_route: bool = True
    # Seconds a forwarded INVITE may go without a final response (RFC 3261 §16.6 timer C).
    timer_c: Annotated[float, Field(ge=180)] = 180.0
    # The RTP relay's ng control (HOST:PORT) that anchors calls' media; "" = none.
    media_relay: Annotated[str, AfterValidator(_optional_host_port)] = "127.0.0.1:2223"
    # Whose calls go through it: "nat" (a party behind NAT), "always" or "never".
    anchor_media: Literal["nat", "always", "never"] = "nat"


class RegistrarSection(Section):
    min_expires: Annotated[int, Field(ge=1)] = 60
    max_expires: Annotated[int, Field(ge=1)] = 3600
    default_expires: Annotated[int, Field(ge=1)] = 3600
    max_contacts: Annotated[int, Field(ge=1)] = 10
    # Group commit of bindings: a batch is written when it has this many rows
    # or is this old, and each 200 OK waits for its batch.
    # (At most 5000: a batch is one version that a catch-up reads in one page.)
    commit_rows: Annotated[int, Field(ge=1, le=5000)] = 500
    commit_ms: Annotated[float, Field(ge=0)] = 10.0
    sweep_interval: Seconds = 5.0
    # With [redis] url, proxies share the location (proxy/feed.py): each reads the
    # database for what the others committed when the feed says so, and also
    # every catch_up_interval seconds (a safety net), or every
    # catch_up_interval_unsubscribed seconds while Redis is away.
    catch_up_interval: Seconds = 1.0
    catch_up_interval_unsubscribed: Seconds = 0.1
    # Retry-After (seconds) of the 503 a proxy answers while it catches up.
    sync_retry_after: Annotated[int, Field(ge=1, le=3600)] = 5


class AuthSection(Section):
    # HMAC key of the stateless nonces, the signed Record-Routes and branches
    # (sipline.proxying.signing) and admin tokens; "" = a random key written once
    # per data directory (node.data_dir/node.key, sipline.secret): the nodes of
    # one box share it and keep it across restarts; nodes on several boxes that
    # share phones or dialogs must share a configured secret.
    secret: str = ""
    nonce_lifetime: Seconds = 300.0
    # Offered in this order. MD5 alone by default: many phones in the field
    # (baresip 1.0, sipp 3.6 among them) fail a 401/407 carrying any other
    # challenge; add "SHA-256" (first, RFC 8760 §2.4) for phones that speak it.
    algorithms: Annotated[list[Literal["SHA-256", "MD5"]], Field(min_length=1)] = ["MD5"]
    # Nonces whose counts (nc) are remembered at once, about 70 bytes each, so a
    # request replayed within a nonce's lifetime is refused; a new nonce over the
    # cap gets a fresh challenge rather than go uncounted. 1M covers 3,300
    # authentications a second with a 300 s lifetime.
    max_nonces: Annotated[int, Field(ge=1000)] = 1_000_000
    # true: a nonce is good only from the IP address it was given to. Off by
    # default: counts stop replays already, and phones whose address changes
    # between challenge and answer (NAT rebinding, IPv4/IPv6, CGNAT pools)
    # would be challenged again.
    bind_nonce_to_source: bool = False
    # Seconds a request waits for the database when its user is not in memory
    # (a subscriber provisioned a moment ago) before it is challenged again.
    lookup_timeout: Annotated[float, Field(gt=0, le=30)] = 1.0
    # Requests (and names) waiting for the database or for the nonce counts on
    # Redis at once; more are challenged again at once.
    max_pending: Annotated[int, Field(ge=1)] = 1000


class NatSection(Section):
    # Bindings of phones behind NAT are pinged (OPTIONS on UDP, CRLF on TCP).
    ping_interval: Seconds = 30.0
    ping_failures: Annotated[int, Field(ge=1)] = 3


class RelaySection(Section):
    """The relay (``sipline relay``): STUN server; RTP relay and ng control keys go here too."""

    stun_host: IPAddress = "127.0.0.1"
    stun_port: Port = 3478
    # RFC 5780 behaviour discovery needs a second IP address: "" = off. With it,
    # STUN listens on both addresses, each on stun_port and stun_alt_port.
    stun_alt_host: Annotated[str, AfterValidator(_optional_ip_address)] = ""
    stun_alt_port: Port = 3479
    # [] = no STUN server.
    stun_transports: list[Literal["udp", "tcp"]] = ["udp", "tcp"]
    # RTP relay, driven by the rtpengine ng protocol over UDP.
    ng_host: IPAddress = "127.0.0.1"
    ng_port: Port = 2223
    # Who may send ng commands (our proxies and B2BUAs); others are dropped unanswered.
    ng_allowed: Annotated[list[IPNetwork], Field(min_length=1)] = ["127.0.0.0/8", "::1"]
    rtp_host: IPAddress = "127.0.0.1"
    # The address written into SDP: "" = rtp_host (set it for a wildcard or 1:1 NAT).
    rtp_advertise: Annotated[str, AfterValidator(_optional_ip_address)] = ""
    rtp_port_min: Port = 30000
    rtp_port_max: Port = 40000
    media_timeout: Seconds = 60.0
    max_sessions: Annotated[int, Field(ge=1)] = 10_000
    # Media sections in one offer or answer; more and nothing is allocated.
    max_media: Annotated[int, Field(ge=1, le=64)] = 8
    # Ports one call may hold (4 per media section: RTP and RTCP on each side).
    max_call_ports: Annotated[int, Field(ge=4)] = 64
    # Ports held by the calls whose offers came from one signalling host together.
    max_source_ports: Annotated[int, Field(ge=4)] = 2000
    # Seconds after a stream latched in which another allowed source may take it over.
    latch_window: Annotated[float, Field(ge=0, le=60)] = 3.0

    @model_validator(mode="after")
    def _alternate_differs(self) -> RelaySection:
        if not self.stun_alt_host:
            return self
        # RFC 5780 §6.1: replies leave from either of two addresses and two ports.
        host, alt = ipaddress.ip_address(self.stun_host), ipaddress.ip_address(self.stun_alt_host)
        if host.is_unspecified or alt.is_unspecified:
            raise ValueError("with stun_alt_host, both STUN hosts must be specific addresses")
        if host == alt or host.version != alt.version:
            raise ValueError("stun_alt_host must be another address of stun_host's family")
        if self.stun_alt_port == self.stun_port:
            raise ValueError("stun_alt_port must differ from stun_port")
        return self

    @model_validator(mode="after")
    def _rtp_ports_and_address(self) -> RelaySection:
        # RTP on an even port, RTCP on the odd one above (RFC 3550 §11).
        if self.rtp_port_max - self.rtp_port_min < 1 + (self.rtp_port_min & 1):
            raise ValueError("rtp_port_min..rtp_port_max must hold an even/odd port pair")
        if ipaddress.ip_address(self.rtp_host).is_unspecified and not self.rtp_advertise:
            raise ValueError("a wildcard rtp_host needs rtp_advertise, the address SDP can carry")
        return self


SipCode = Annotated[int, Field(ge=300, le=699)]
Share = Annotated[float, Field(ge=0, le=1)]


def _pattern(value: str) -> str:
    # Digits (with an optional leading +) are a prefix; anything else a regular expression.
    if not value.lstrip("+").isdigit():
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"expected a number prefix or a regular expression: {exc}") from None
    return value


class PatternRoute(Section):
    """A ``[[b2bua.routes]]`` entry: numbers matching ``pattern`` go to ``gateways``, in order."""

    name: str = ""
    # A prefix ("+4420", "112") or a regular expression matched against the whole number.
    pattern: Annotated[str, Field(min_length=1), AfterValidator(_pattern)]
    gateways: Annotated[list[Hop], Field(min_length=1)]


class B2buaSection(Section):
    """The back-to-back user agent (``sipline b2bua``)."""

    host: IPAddress = "127.0.0.1"
    port: Port = 5070
    # Who may send calls (the proxies); anyone else gets 403. Phones on the same
    # box are 127.0.0.1 too: name the proxy's address and port.
    trusted: Annotated[list[Peer], Field(min_length=1)] = ["127.0.0.1:5060"]
    # The ACR nodes calls are balanced over (round robin), HOST:PORT[;transport=tcp|tls].
    acr: Annotated[list[Hop], Field(min_length=1)] = ["127.0.0.1:5080", "127.0.0.1:5082"]
    # Seconds an ACR node (or a pattern route's gateway) may take to send any
    # response before the call goes to the next one.
    failover_timeout: Seconds = 2.0
    # Seconds a hop may stay silent (nothing at all from it) while an INVITE to it
    # waits before new calls skip it: it is marked down at once, as on a 503 or on
    # the failover timeout. Above the 0.2 s after which an ACR node sends 100 Trying.
    silence_timeout: Annotated[float, Field(ge=0.25)] = 0.4
    # OPTIONS probing of the ACR nodes and gateways, with hysteresis; a hop that is
    # down is probed every probe_down_interval, to be back as soon as it answers.
    probe_interval: Seconds = 5.0
    probe_down_interval: Seconds = 0.5
    probe_failures: Annotated[int, Field(ge=1)] = 3
    probe_successes: Annotated[int, Field(ge=1)] = 2
    routes: list[PatternRoute] = []
    # Timer C (RFC 3261 §16.6 step 11): seconds a call that rang may go without a word
    # from the far side before it is CANCELled and the caller gets 408; longer than
    # the ACR's own (180 s), which ends a silent carrier's attempt first.
    timer_c: Seconds = 190.0
    # How many 3xx a call follows on the B leg: the first Contact naming a number
    # becomes the Request-URI, routed again like a new call to it (ACR nodes or a
    # pattern route, never the Contact's host). 0: the 3xx goes to the caller.
    follow_redirects: Annotated[int, Field(ge=0, le=10)] = 0
    # Seconds after which any call is ended with BYE on both legs.
    max_call_duration: Seconds = 14400.0
    # RFC 4028 session timer asked of both legs (seconds; Min-SE floor 90).
    session_expires: Annotated[int, Field(ge=90)] = 1800
    min_se: Annotated[int, Field(ge=90)] = 90
    media_relay: Annotated[str, AfterValidator(_optional_host_port)] = "127.0.0.1:2223"
    anchor_media: Literal["nat", "always", "never"] = "nat"
    # A caller's SRTP (RTP/SAVP, RFC 4568) is ended at the relay (unless anchor_media is
    # "never"); toward the ACR and carriers the call's media is RTP, or SRTP under the
    # relay's own keys with carrier_srtp = true.
    carrier_srtp: bool = False
    # Hours an account may exceed its licence before calls over it get 403.
    grace_hours: Annotated[int, Field(ge=0)] = 48


class AcrSection(Section):
    """The adaptive call router (``sipline acr [--node primary|secondary]``)."""

    primary: HostPort = "127.0.0.1:5080"
    secondary: HostPort = "127.0.0.1:5082"
    # Who may send outbound calls (the B2BUAs); carriers' gateways send inbound ones.
    # Phones on the same box are 127.0.0.1 too: name the B2BUA's address and port.
    trusted: Annotated[list[Peer], Field(min_length=1)] = ["127.0.0.1:5070"]
    # The default routing profile (per-destination profiles live in the database).
    weight_availability: Share = 0.4
    weight_quality: Share = 0.3
    weight_price: Share = 0.3
    max_attempts: Annotated[int, Field(ge=1)] = 3
    final_codes: list[SipCode] = [486, 487, 600, 603, 404, 484]
    # Seconds a carrier may take to send a provisional response (post-dial delay).
    pdd_timeout: Seconds = 5.0
    # Share of calls that try a lower-ranked carrier first, to keep its statistics fresh.
    exploration: Share = 0.02
    # Half-life (seconds) of the time-decayed carrier statistics.
    stats_half_life: Seconds = 3600.0
    # OPTIONS probing of gateways and DID proxies, with hysteresis.
    probe_interval: Seconds = 10.0
    probe_failures: Annotated[int, Field(ge=1)] = 3
    probe_successes: Annotated[int, Field(ge=1)] = 2
    # A gateway that answers 408/503 or times out is passed over for this long,
    # doubling on each repeat up to max_backoff.
    backoff: Seconds = 30.0
    max_backoff: Seconds = 600.0
    # CDRs are written in batches of at most this many rows, or this old.
    cdr_batch_rows: Annotated[int, Field(ge=1)] = 500
    cdr_batch_ms: Annotated[float, Field(ge=0)] = 200.0
    # Milliseconds the journal (answers and CDRs, fsynced before the 200 goes
    # upstream) gathers appends so one fsync carries them together.
    journal_commit_ms: Annotated[float, Field(ge=0, le=100)] = 1.0


class PortalSection(Section):
    """The web portal (portal/): where it listens, its sessions and what one client may cost."""

    # HOST:PORT of the HTTP listener. Off loopback, put it behind TLS (secure_cookies).
    listen: Annotated[str, AfterValidator(_host_port)] = "127.0.0.1:8080"
    # Send the session cookie over HTTPS only (set it when a TLS proxy fronts the portal).
    secure_cookies: bool = False
    # Reverse proxies (addresses or networks) whose X-Forwarded-For names the client:
    # the login limits and logs then count the client, not the proxy. Empty: no
    # forwarded header is believed (the socket's peer is the source).
    trusted_proxies: list[IPNetwork] = []
    # Seconds a login lasts (the signed cookie's age, checked by the server).
    session_max_age: Annotated[int, Field(ge=60, le=7 * 86400)] = 8 * 3600
    # Failed logins one source IP may make within login_window, and one user name
    # may suffer from any source; the next ones get 429 for login_ban seconds.
    # Counted and logged with the source.
    login_failures: Annotated[int, Field(ge=1)] = 5
    login_window: Seconds = 300.0
    login_ban: Seconds = 300.0
    # Sources, and user names, whose failures are remembered at once; the oldest are
    # forgotten first.
    max_sources: Annotated[int, Field(ge=16)] = 65536
    # Password verifies (argon2, a core for tens of ms each) at once; a login over it
    # gets 503 with Retry-After.
    login_verifies: Annotated[int, Field(ge=1, le=64)] = 4
    # Rows per page of a listing (the API caps ?limit= at this).
    max_page: Annotated[int, Field(ge=10, le=10_000)] = 500
    # A rate deck uploaded through the portal, at most (bytes).
    max_upload_bytes: Annotated[int, Field(ge=1024)] = 64 << 20
    # Seconds between two frames of a live tile (server-sent events).
    live_interval: Annotated[float, Field(gt=0, le=2.0)] = 1.0
    # Live streams open at once (each holds a task); over it new ones get 503.
    max_streams: Annotated[int, Field(ge=1)] = 256
    # ... and per user (429 over it).
    streams_per_user: Annotated[int, Field(ge=1)] = 8
    # CSV exports at once (each holds a database connection while the client reads):
    # over max_exports 503, over exports_per_user for one user 429.
    max_exports: Annotated[int, Field(ge=1)] = 4
    exports_per_user: Annotated[int, Field(ge=1)] = 1
    # Seconds an export may take, however slowly its client reads; then it is cut.
    export_timeout: Seconds = 600.0
    # The widest time range (seconds) a customer may search, sum or export; an
    # export needs since and until, a search without them covers the last day.
    customer_span: Annotated[float, Field(ge=86400.0)] = 31 * 86400.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
    )

    node: NodeSection = Field(default_factory=NodeSection)
    sip: SipSection = Field(default_factory=SipSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    tls: TlsSection = Field(default_factory=TlsSection)
    log: LogSection = Field(default_factory=LogSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    admin: AdminSection = Field(default_factory=AdminSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    redis: RedisSection = Field(default_factory=RedisSection)
    proxy: ProxySection = Field(default_factory=ProxySection)
    registrar: RegistrarSection = Field(default_factory=RegistrarSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    nat: NatSection = Field(default_factory=NatSection)
    relay: RelaySection = Field(default_factory=RelaySection)
    b2bua: B2buaSection = Field(default_factory=B2buaSection)
    acr: AcrSection = Field(default_factory=AcrSection)
    portal: PortalSection = Field(default_factory=PortalSection)

    @model_validator(mode="after")
    def _certified_peers_are_named(self) -> Settings:
        # A typo in "tls:NAME" would trust nobody, silently: name the key instead.
        names = {peer.name for peer in self.tls.peers}
        for section in ("proxy", "b2bua", "acr"):
            for entry in getattr(self, section).trusted:
                if entry.startswith("tls:") and entry[4:].strip() not in names:
                    known = ", ".join(sorted(names)) or "none"
                    raise ValueError(
                        f"{section}.trusted = {entry!r}: no [[tls.peers]] entry is named "
                        f"{entry[4:].strip()!r} (named: {known})"
                    )
        return self

    @model_validator(mode="after")
    def _tls_listeners_are_free(self) -> Settings:
        # Each role's TLS listener is its own port + (tls_port - port): were the
        # secondary ACR at 5081, the primary's TLS port would be its SIP port,
        # and one of them would die at start of an address already in use.
        if "tls" not in self.sip.transports:
            return self
        roles = {
            "sip.port": (self.sip.host, self.sip.port),
            "b2bua.port": (self.b2bua.host, self.b2bua.port),
            "acr.primary": split_host_port(self.acr.primary),
            "acr.secondary": split_host_port(self.acr.secondary),
        }
        offset = (self.sip.tls_port - self.sip.port) if self.sip.tls_port else 1
        for role, (host, port) in roles.items():
            for other, taken in roles.items():
                if other != role and taken == (host, port + offset):
                    raise ValueError(
                        f"sip.tls_port = {self.sip.tls_port}: the TLS listener of {role} "
                        f"({host}:{port + offset}) is the SIP port of {other}; set "
                        "sip.tls_port so that each role's port + (tls_port - sip.port) is free"
                    )
        return self

    @model_validator(mode="after")
    def _admin_needs_a_secret_off_loopback(self) -> Settings:
        if not ipaddress.ip_address(self.metrics.host).is_loopback and not (
            self.admin.secret or self.auth.secret
        ):
            raise ValueError(
                f"metrics.host = {self.metrics.host!r} is not a loopback address: the admin "
                "endpoint there needs admin.secret (or auth.secret) to authenticate actions"
            )
        return self

    @model_validator(mode="after")
    def _portal_off_loopback_needs_tls(self) -> Settings:
        host, _ = split_host_port(self.portal.listen)
        if not ipaddress.ip_address(host).is_loopback and not self.portal.secure_cookies:
            raise ValueError(
                f"portal.listen = {self.portal.listen!r} is not a loopback address: serve the "
                "portal behind TLS and set portal.secure_cookies = true, or the session cookies "
                "cross the network in the clear"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: explicit arguments, then the environment, then the file.
        path = _toml_path.get()
        if path is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path))


def load_settings(path: str | Path | None) -> Settings:
    """Settings from the TOML file at ``path`` (None: defaults) overridden by the environment."""
    path = _check_file(path)
    _check_env_sections()
    origin = str(path) if path else "defaults and environment"
    token = _toml_path.set(path)
    try:
        settings = Settings()
        global loaded_from
        loaded_from = origin
        return settings
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: TOML syntax error: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror or exc}") from None
    except SettingsError as exc:
        # Raised for an env value that should be JSON (a list or a table) and is not.
        raise ConfigError(
            f"invalid configuration ({origin}): {exc}: {exc.__cause__}\n"
            f"  lists and tables given in {ENV_PREFIX}* environment variables must be JSON"
        ) from None
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None
    finally:
        _toml_path.reset(token)


def _check_file(path: str | Path | None) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path}: not found (or not a regular file)")
    return path


def _check_env_sections() -> None:
    unknown = _unknown_env_sections()
    if unknown:
        raise ConfigError(
            f"unknown config section in environment variable(s): {', '.join(unknown)}; "
            f"known sections: {', '.join(Settings.model_fields)}"
        )


def _unknown_env_sections() -> list[str]:
    # The env source silently ignores SIPLINE_<X>__... when X is not a section; a typo
    # there must fail like an unknown key in the file. Flat SIPLINE_* names stay free.
    unknown = []
    for name in os.environ:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and ENV_DELIMITER in upper[len(ENV_PREFIX) :]:
            section = upper[len(ENV_PREFIX) :].split(ENV_DELIMITER, 1)[0].lower()
            if section not in Settings.model_fields:
                unknown.append(name)
    return sorted(unknown)


def _describe(exc: ValidationError, origin: str) -> str:
    errors = exc.errors(include_url=False)
    lines = [f"invalid configuration ({origin}): {len(errors)} problem(s)"]
    lines += [f"  {_describe_error(error)}" for error in errors]
    return "\n".join(lines)


def _describe_error(error: ErrorDetails) -> str:
    loc = error["loc"]
    if not loc:  # a rule across sections: its message names the keys (and shows no values)
        return _expectation(error["msg"])
    key = _dotted(loc)
    if error["type"] == "extra_forbidden":
        expected = f"unknown key; {_allowed_keys(loc[:-1])}"
    else:
        expected = _expectation(error["msg"])
    line = f"{key} = {error['input']!r}: {expected}"
    env_name = _env_name(loc)
    if env_name in os.environ:
        line += f" (value from environment variable {env_name})"
    return line


def _expectation(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    if msg.startswith("Input should be "):
        return "expected " + msg.removeprefix("Input should be ")
    return msg


def _dotted(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key


def _allowed_keys(parent: tuple[int | str, ...]) -> str:
    model: type[BaseModel] = Settings
    for part in parent:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return "see configs/single.toml for the known keys"
        model = annotation
    where = f"[{_dotted(parent)}]" if parent else "top level"
    return f"known keys at {where}: {', '.join(model.model_fields)}"


def _env_name(loc: tuple[int | str, ...]) -> str:
    names = [str(part) for part in loc if isinstance(part, str)]
    return (ENV_PREFIX + ENV_DELIMITER.join(names)).upper()


def listening_on(settings: Settings, address: str) -> Settings:
    """A copy of ``settings`` whose SIP node listens on ``address`` (HOST:PORT).

    The B2BUA and the ACR nodes run the same Node as the proxy, each on its own address.
    """
    host, port = split_host_port(address)
    # Each role's TLS listener is its own port + 1 (or tls_port away from it).
    tls_port = settings.sip.tls_port and settings.sip.tls_port - settings.sip.port + port
    sip = settings.sip.model_copy(update={"host": host, "port": port, "tls_port": tls_port})
    return settings.model_copy(update={"sip": sip})
