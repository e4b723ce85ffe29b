"""Connecting to a broker: URL, credentials, TLS and protocol version, in one place for every MQTT client
of the runtime (publisher, subscription source). Secrets never appear in `str()`, logs or errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from edge_runtime.errors import RnnedgeError

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

# MQTT protocol levels (paho's MQTTv311 and MQTTv5); paho itself, and ssl with it, is imported only when a client
# is made: a run without MQTT does without them (about 3 MB of peak RSS)
PROTOCOLS = {"3.1.1": 4, "5": 5}
MAX_KEEPALIVE = 65535  # CONNECT carries it in 16 bits: paho fails only at connect, after the run has spooled


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError:  # e.g. an unclosed IPv6 bracket
            hostname = None
        if not hostname or parts.scheme not in ("mqtt", "mqtts"):
            raise RnnedgeError(
                f"broker URL {_redacted(url)!r} is not of the form mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
            )
        try:
            port = parts.port
        except ValueError:  # not a number, or beyond 65535
            port = -1
        if port is None:
            port = 8883 if parts.scheme == "mqtts" else 1883
        if not 1 <= port <= 65535:  # port 0 would otherwise fall back to the default port without a word
            raise RnnedgeError(f"broker URL {_redacted(url)!r} has an invalid port (expected 1-65535)")
        return cls(
            parts.hostname,
            port,
            parts.scheme == "mqtts",
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:  # never shows the password
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"BrokerAddress({self})"


def _redacted(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:  # unparseable: hide everything before the host, where a password would be
        return url.rpartition("@")[2] if "@" in url else url
    if password is None:
        return url
    return url.replace(f":{password}@", ":***@", 1)


@dataclass(frozen=True)
class MqttSettings:
    url: str
    username: str | None = None  # overrides the URL's
    password: str | None = None
    ca_file: Path | None = None  # TLS: trust this CA instead of the system's
    cert_file: Path | None = None  # TLS client certificate ...
    key_file: Path | None = None  # ... and its key
    protocol: str = "3.1.1"
    keepalive: int = 30

    def __repr__(self) -> str:  # dataclass repr would print the password
        return f"MqttSettings({self.address}, protocol={self.protocol})"

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress.parse(self.url)

    def check(self) -> MqttSettings:
        """Refuse a bad URL, protocol or keepalive at start, before a bundle is loaded or a model trained."""
        _ = self.address
        if self.protocol not in PROTOCOLS:
            raise RnnedgeError(f"MQTT protocol {self.protocol!r} is not supported (supported: 3.1.1, 5)")
        if not 0 <= self.keepalive <= MAX_KEEPALIVE:
            raise RnnedgeError(
                f"MQTT keepalive (mqtt.keepalive) must be 0-{MAX_KEEPALIVE} seconds, got {self.keepalive}"
            )
        return self

    def client(self, client_id: str) -> mqtt.Client:
        """A paho client with credentials and TLS set, not yet connected."""
        import ssl

        import paho.mqtt.client as mqtt

        self.check()
        address = self.address
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=PROTOCOLS[self.protocol])
        username = self.username or address.username
        if username:
            client.username_pw_set(username, self.password or address.password)
        if address.tls or self.ca_file:
            for path in (self.ca_file, self.cert_file, self.key_file):
                if path is not None and not Path(path).is_file():
                    raise RnnedgeError(f"TLS file {path} does not exist")
            try:
                client.tls_set(
                    ca_certs=str(self.ca_file) if self.ca_file else None,
                    certfile=str(self.cert_file) if self.cert_file else None,
                    keyfile=str(self.key_file) if self.key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (ssl.SSLError, OSError) as exc:
                raise RnnedgeError(f"TLS set-up failed: {exc}") from None
        return client
