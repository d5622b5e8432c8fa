import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from services.order.views import json_default


def test_answers_carry_rfc_3339_times_and_the_text_of_ids_and_amounts() -> None:
    order_id = uuid.uuid4()
    body = {"created_at": datetime(2026, 12, 5, 8, 18, 16, 794349, tzinfo=UTC), "order_id": order_id}
    body["amount"] = Decimal("25.00")

    document = json.loads(json.dumps(body, default=json_default))

    assert document == {
        "created_at": "2026-12-05T08:18:16.794349+00:00",
        "order_id": str(order_id),
        "amount": "25.00",
    }
