"""The connector contract suite, run against the built-in file connector (a CSV backlog)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fragment_core.connector import Record
from fragment_core.connectors.file import (
    SAMPLE_COLUMNS,
    FileConfig,
    FileConnector,
    sample_rows,
    write_rows,
)
from fragment_core.testing import ConnectorContract

BACKLOG = 7


class TestFileContract(ConnectorContract):
    connector_class = FileConnector

    @pytest.fixture
    def backlog_file(self, tmp_path: Path) -> Path:
        """Seven open rows and one already done (not in the backlog)."""
        rows = sample_rows(BACKLOG + 1)
        rows[-1]["status"] = "done"
        path = tmp_path / "backlog.csv"
        write_rows(path, [*SAMPLE_COLUMNS, "status"], rows, fmt="csv")
        return path

    @pytest.fixture
    def connector(self, backlog_file: Path) -> FileConnector:
        return FileConnector(FileConfig(path=backlog_file), source="kyc-backlog")

    @pytest.fixture
    def bad_connector(self, tmp_path: Path) -> FileConnector:
        return FileConnector(FileConfig(path=tmp_path / "missing.csv"), source="kyc-backlog")

    @pytest.fixture
    def backlog_size(self) -> int:
        return BACKLOG

    @pytest.fixture
    def malformed_records(self) -> list[Record]:
        return [
            {"id": "", "title": "no id", "_line": 2},
            {"id": "C-9", "title": "  ", "_line": 3},
            {"id": "C-10", "_line": 4},
        ]

    @pytest.fixture
    def secrets(self) -> list[str]:
        return []  # the file connector has no secret option (the contract checks that)

    @pytest.fixture
    def effect_count(self, connector: FileConnector) -> Callable[[str], int]:
        """Rows of ``external_id`` marked done in the file (a repeated effect adds rows)."""

        def count(external_id: str) -> int:
            _, rows = connector.read_rows()
            done = connector.config.done_value
            return sum(1 for r in rows if r.get("id") == external_id and r.get("status") == done)

        return count


def test_missing_file_error_names_the_source(tmp_path: Path) -> None:
    missing = FileConnector(FileConfig(path=tmp_path / "gone.csv"), source="kyc-backlog")
    with pytest.raises(Exception, match=r"source 'kyc-backlog', file 'gone.csv'.*does not exist"):
        missing.check()
