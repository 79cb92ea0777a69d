"""Registers the ``acme`` connector."""

from collections.abc import Callable, Iterator

from pydantic import SecretStr

from fragment_core import hookimpl
from fragment_core.connector import Connector, ConnectorConfig, Record
from fragment_core.task import Task


class AcmeConfig(ConnectorConfig):
    """Options of the acme connector."""

    region: str
    api_key: SecretStr


class AcmeConnector(Connector[AcmeConfig]):
    """Tickets of the Acme back office."""

    name = "acme"
    example_options = {"region": "eu", "api_key": "${ACME_API_KEY}"}

    def fetch_backlog(self) -> Iterator[Record]:
        yield {"id": "1", "subject": "first"}

    def to_task(self, record: Record) -> Task:
        return Task.new(external_id=record["id"], title=record["subject"])

    def check(self) -> str:
        return f"acme region {self.config.region} reachable"


@hookimpl
def fragment_register_connectors(register: Callable[[type[Connector]], None]) -> None:
    register(AcmeConnector)
