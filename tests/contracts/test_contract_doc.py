"""docs/contract.md is the reference other systems read: it must say what the code does."""

from deploy.contract_doc import DOC_PATH, render


def test_the_contract_document_matches_the_code():
    assert DOC_PATH.read_text() == render(), "docs/contract.md is stale: run `make docs` and commit it"


def test_the_contract_document_names_every_topic_route_and_command():
    text = render()

    assert "`voucher.issued`" in text
    assert "| POST | `/v1/ipa/batches` | admin, hris, ops |" in text
    assert "| `orchard dlq replay` |" in text
