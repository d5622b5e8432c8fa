"""The committed JSON Schemas are the public contract: the models may only grow compatibly from them."""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from pathlib import Path

import pytest

from contracts import schemagen
from contracts.compat import catalogue_incompatibilities, incompatibilities
from contracts.envelope import EventData
from contracts.registry import TOPICS, topic
from contracts.schemagen import (
    committed_schemas,
    current_schemas,
    generated_files,
    out_of_date,
    schema_name,
    topic_schema,
)
from contracts.topics import Topics
from contracts.values import Identifier, Text, UtcDatetime
from contracts.vouchers import VoucherIssueFailed


def test_current_models_are_compatible_with_the_committed_schemas() -> None:
    assert catalogue_incompatibilities(committed_schemas(), current_schemas()) == []


def test_committed_schemas_and_asyncapi_match_the_models() -> None:
    stale = out_of_date(generated_files(current_schemas()))
    assert stale == [], "run: python -m contracts.schemagen"


def test_every_version_of_every_topic_has_a_committed_schema() -> None:
    committed = committed_schemas()
    versions = {
        (spec.name, version)
        for spec in TOPICS
        for version in (*spec.payload.EARLIER_VERSIONS, spec.payload.SCHEMA_VERSION)
    }
    assert set(committed) == {schema_name(name, version) for name, version in versions}
    for name, version in versions:
        schema = committed[schema_name(name, version)]
        assert schema["properties"]["event_type"]["const"] == name
        assert schema["$id"] == f"urn:orchard:event:{name}:v{version}"


def test_voucher_issued_version_two_carries_a_sealed_code_and_version_one_stays_readable() -> None:
    committed = committed_schemas()
    v1 = committed["voucher.issued.v1"]["$defs"]["VoucherIssuedV1"]["properties"]
    v2 = committed["voucher.issued.v2"]["$defs"]["VoucherIssued"]["properties"]
    assert "code" in v1
    assert "sealed_code" not in v1
    assert "sealed_code" in v2
    assert "code" not in v2
    assert committed["voucher.issued.v2"]["properties"]["schema_version"]["const"] == 2


class _WithoutReason(EventData):
    order_id: uuid.UUID
    campaign_id: Identifier


class _CampaignAsNumber(EventData):
    order_id: uuid.UUID
    campaign_id: int
    reason: Text


class _WithRequiredRetry(VoucherIssueFailed):
    retry_at: UtcDatetime


class _WithOptionalRetry(VoucherIssueFailed):
    retry_at: UtcDatetime | None = None


def _against_committed(payload: type[EventData]) -> list[str]:
    spec = dataclasses.replace(topic(Topics.VOUCHER_ISSUE_FAILED), payload=payload)
    return incompatibilities(committed_schemas()[schema_name(spec.name, 1)], topic_schema(spec))


def test_removing_a_field_from_a_model_fails_against_the_committed_schema() -> None:
    assert _against_committed(_WithoutReason) == ["$.data.reason: property removed (or renamed)"]


def test_changing_a_field_type_fails_against_the_committed_schema() -> None:
    assert _against_committed(_CampaignAsNumber) == [
        "$.data.campaign_id: type changed from string to integer"
    ]


def test_adding_a_required_field_fails_against_the_committed_schema() -> None:
    assert _against_committed(_WithRequiredRetry) == ["$.data.retry_at: new required property"]


def test_adding_an_optional_field_passes_against_the_committed_schema() -> None:
    assert _against_committed(_WithOptionalRetry) == []


@pytest.fixture
def committed_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The generator pointed at a copy of the committed files."""
    schemas = tmp_path / "schemas"
    shutil.copytree(schemagen.SCHEMA_DIR, schemas)
    shutil.copy(schemagen.ASYNCAPI_PATH, tmp_path / "asyncapi.json")
    monkeypatch.setattr(schemagen, "PACKAGE_DIR", tmp_path)
    monkeypatch.setattr(schemagen, "SCHEMA_DIR", schemas)
    monkeypatch.setattr(schemagen, "ASYNCAPI_PATH", tmp_path / "asyncapi.json")
    return schemas


def test_the_check_passes_on_current_files(committed_copy: Path) -> None:
    assert schemagen.main(["--check"]) == 0


def test_the_check_fails_on_a_stale_file(committed_copy: Path) -> None:
    (committed_copy / "voucher.stock_low.v1.json").write_text("{}\n", encoding="utf-8")
    assert schemagen.main(["--check"]) == 1


def test_the_generator_rewrites_a_stale_file_compatibly(committed_copy: Path) -> None:
    path = committed_copy / "voucher.stock_low.v1.json"
    expected = path.read_text(encoding="utf-8")
    document = json.loads(expected)
    document["description"] = "an older wording"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert schemagen.main([]) == 0
    assert path.read_text(encoding="utf-8") == expected


def test_the_generator_refuses_to_write_an_incompatible_change(
    committed_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = committed_copy / "voucher.stock_low.v1.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    # As if the model had lost a field the committed contract promises.
    document["$defs"]["VoucherStockLow"]["properties"]["warehouse"] = {"type": "string"}
    before = json.dumps(document)
    path.write_text(before, encoding="utf-8")
    assert schemagen.main([]) == 2
    assert path.read_text(encoding="utf-8") == before
    assert "voucher.stock_low.v1: $.data.warehouse: property removed (or renamed)" in capsys.readouterr().err


def test_the_generator_refuses_to_drop_a_topic(committed_copy: Path) -> None:
    (committed_copy / "billing.invoiced.v1.json").write_text(json.dumps({"type": "object"}), encoding="utf-8")
    assert schemagen.main([]) == 2
    assert schemagen.main(["--check"]) == 1
