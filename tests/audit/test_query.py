"""guard audit query: filters and output formats."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from guard.audit import query
from guard.audit.canonical import parse_rfc3339
from tests.audit.helpers import START, sample_log


async def test_filters_combine(tmp_path: Path) -> None:
    await sample_log(tmp_path)
    everything = list(query.select([tmp_path], query.Filters()))
    assert everything and all(not query.is_internal(r) for r in everything)
    denied = list(query.select([tmp_path], query.Filters(decision="deny")))
    assert denied and all(r["event"]["outcome"] == "failure" for r in denied)
    assert {r["guard"]["target"]["name"] for r in denied} == {"export_all"}
    bob = list(query.select([tmp_path], query.Filters(subject="bob", tool="export_*", decision="deny")))
    assert bob and all(r["user"]["name"] == "bob" for r in bob)
    allowed = list(query.select([tmp_path], query.Filters(decision="allow", server="crm")))
    assert allowed and all("allowed" in r["event"]["type"] for r in allowed)
    person = list(query.select([tmp_path], query.Filters(entity_type="PERSON")))
    assert person and all("PERSON" in r["guard"]["pii"]["entity_types"] for r in person)
    assert not list(query.select([tmp_path], query.Filters(server="other")))
    internal = list(query.select([tmp_path], query.Filters(include_internal=True)))
    assert len(internal) > len(everything)


async def test_time_window(tmp_path: Path) -> None:
    await sample_log(tmp_path)
    since, until = START + 3600, START + 7200
    window = list(query.select([tmp_path], query.Filters(since=since, until=until)))
    assert window
    assert all(since <= parse_rfc3339(r["@timestamp"]) < until for r in window)


def test_parse_when() -> None:
    now = 1_000_000.0
    assert query.parse_when("15m", now) == now - 900
    assert query.parse_when("2h", now) == now - 7200
    assert query.parse_when("7d", now) == now - 7 * 86400
    assert query.parse_when("1970-01-02", now) == 86400


async def test_table_and_json_output(tmp_path: Path) -> None:
    await sample_log(tmp_path, hours=1)
    recs = list(query.select([tmp_path], query.Filters(decision="deny")))
    table = list(query.format_table(recs))
    assert table[0].startswith("TIME") and len(table) == len(recs) + 1
    assert "export_all" in table[1] and "failure" in table[1]
    lines = list(query.format_json(recs))
    assert [orjson.loads(line)["event"]["id"] for line in lines] == [r["event"]["id"] for r in recs]


async def test_query_csv_exports_denials_for_a_spreadsheet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    from guard.cli import main

    await sample_log(tmp_path / "log", hours=1)
    assert main(["audit", "query", str(tmp_path / "log"), "--decision", "deny", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and {r["decision"] for r in rows} == {"deny"}
    first = rows[0]
    assert first["action"] == "tools/call" and first["target"] == "export_all" and first["stage"] == "authorize"
    assert first["reason"] == "policy_deny" and first["subject"] in ("bob", "carol", "dave")


def test_csv_cells_cannot_start_a_spreadsheet_formula() -> None:
    from guard.audit.query import csv_row

    record = {"@timestamp": "t", "guard": {"target": {"name": "=HYPERLINK(\"http://x\")"}}, "user": {"name": "@x"}}
    row = csv_row(record)
    assert "'=HYPERLINK(\"http://x\")" in row and "'@x" in row
