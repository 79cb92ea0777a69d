"""Connecting to Temporal: ``[fleet]``, Temporal's own environment, command line flags.

The order, each overriding the one before: defaults (``localhost:7233``, namespace
``default``), the ``[fleet]`` table, Temporal's environment variables and config profile
(``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
``TEMPORAL_TLS_CLIENT_CERT_PATH``, ``TEMPORAL_TLS_CLIENT_KEY_PATH``,
``TEMPORAL_TLS_SERVER_CA_CERT_PATH``..., read by temporalio's ``envconfig``), then flags.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile
from temporalio.service import TLSConfig

from fragment_core.config import FleetSettings
from fragment_core.errors import ConfigurationError

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"


@dataclass
class Connection:
    """Where and how to reach Temporal (secrets kept out of ``repr``)."""

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = "fragment"
    api_key: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_cert: bytes | None = field(default=None, repr=False)
    tls_key: bytes | None = field(default=None, repr=False)
    tls_ca: bytes | None = field(default=None, repr=False)
    tls_server_name: str | None = None

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`temporalio.client.Client.connect`."""
        tls: bool | TLSConfig = self.tls or self.api_key is not None
        if self.tls_cert or self.tls_key or self.tls_ca or self.tls_server_name:
            if bool(self.tls_cert) != bool(self.tls_key):
                raise ConfigurationError(
                    "TLS needs both a client certificate and its key (tls_cert and tls_key)",
                    where="[fleet]",
                )
            tls = TLSConfig(
                server_root_ca_cert=self.tls_ca,
                client_cert=self.tls_cert,
                client_private_key=self.tls_key,
                domain=self.tls_server_name,
            )
        kwargs: dict[str, Any] = {"namespace": self.namespace, "tls": tls}
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key
        return kwargs

    async def client(self) -> Client:
        """A connected client."""
        try:
            return await Client.connect(self.address, **self.connect_kwargs())
        except RuntimeError as exc:  # the bridge's "Failed client connect: ..."
            raise ConfigurationError(
                f"cannot reach Temporal at {self.address} (namespace {self.namespace!r}): {exc}",
                where="[fleet]",
            ) from None


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the {what} {path}: {exc.strerror or exc}", where="[fleet]"
        ) from None


def _data(source: Any) -> bytes | None:
    """A temporalio envconfig data source (path or contents) as bytes."""
    if source is None:
        return None
    if isinstance(source, Path):
        return _read(source, "TLS file")
    return source if isinstance(source, bytes) else str(source).encode()


def resolve(
    fleet: FleetSettings,
    *,
    env: Mapping[str, str] | None = None,
    **flags: Any,
) -> Connection:
    """The connection: defaults, then ``[fleet]``, then Temporal's environment (``env``,
    default the process's), then the flags that are not ``None``."""
    conn = Connection(
        address=fleet.address or DEFAULT_ADDRESS,
        namespace=fleet.namespace or DEFAULT_NAMESPACE,
        task_queue=fleet.task_queue,
        api_key=fleet.api_key.get_secret_value() if fleet.api_key else None,
        tls=bool(fleet.tls),
        tls_cert=_read(fleet.tls_cert, "TLS client certificate"),
        tls_key=_read(fleet.tls_key, "TLS client key"),
        tls_ca=_read(fleet.tls_ca, "TLS CA certificate"),
        tls_server_name=fleet.tls_server_name,
    )
    profile = ClientConfigProfile.load(
        disable_file=env is not None, override_env_vars=dict(env) if env is not None else None
    )
    if profile.address:
        conn.address = profile.address
    if profile.namespace:
        conn.namespace = profile.namespace
    if profile.api_key:
        conn.api_key = profile.api_key
    tls = profile.tls
    if tls is not None:
        if tls.disabled is not None:
            conn.tls = not tls.disabled
        conn.tls_cert = _data(tls.client_cert) or conn.tls_cert
        conn.tls_key = _data(tls.client_private_key) or conn.tls_key
        conn.tls_ca = _data(tls.server_root_ca_cert) or conn.tls_ca
        conn.tls_server_name = tls.server_name or conn.tls_server_name
    for name, value in flags.items():
        if value is None:
            continue
        if name in ("tls_cert", "tls_key", "tls_ca"):
            value = _read(Path(value), name.replace("_", " "))
        setattr(conn, name, value)
    return conn


def run(coroutine: Any) -> Any:
    """Run a coroutine to its end (the CLI's entry into asyncio)."""
    return asyncio.run(coroutine)
