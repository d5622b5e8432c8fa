"""View models: what the pages show, from the services' answers."""

from __future__ import annotations

from console import views


def test_tabs_carry_the_exact_count_of_each_state_and_mark_the_open_one() -> None:
    summary = {"by_state": {"pending": 7, "cancelled": 2, "completed": 31}}
    tabs = views.order_tabs(summary, "cancelled")
    assert [(t.state, t.count, t.active) for t in tabs] == [
        ("pending", 7, False),
        ("cancelled", 2, True),
        ("completed", 31, False),
    ]


def test_a_state_missing_from_the_summary_counts_zero() -> None:
    assert [t.count for t in views.order_tabs({}, "pending")] == [0, 0, 0]


def test_filters_turn_whole_days_into_an_aware_range_including_the_last_day() -> None:
    filters = views.order_filters(
        {"state": "completed", "created_from": "2026-12-01", "created_to": "2026-12-05"}
    )
    params = filters.api_params()
    assert params["created_from"] == "2026-12-01T00:00:00+00:00"
    assert params["created_to"] == "2026-12-06T00:00:00+00:00"
    assert params["state"] == "completed"


def test_unknown_filter_values_fall_back_to_the_defaults() -> None:
    filters = views.order_filters(
        {"state": "exploded", "sort": "drop table", "fulfilment_status": "x", "created_from": "yesterday"}
    )
    assert (filters.state, filters.sort, filters.fulfilment_status, filters.created_from) == (
        "pending",
        "-created_at",
        "",
        "",
    )
    assert "created_from" not in filters.api_params()


def test_needs_attention_is_sent_only_when_asked_for() -> None:
    assert "needs_attention" not in views.order_filters({}).api_params()
    assert views.order_filters({"needs_attention": "1"}).api_params()["needs_attention"] == "true"


def test_a_tab_link_keeps_the_other_filters() -> None:
    filters = views.order_filters({"state": "pending", "campaign_id": "CAMP-1"})
    assert filters.query(state="completed") == "state=completed&campaign_id=CAMP-1&sort=-created_at"


def test_order_rows_show_money_with_its_currency_and_times_in_utc() -> None:
    (row,) = views.order_rows(
        [
            {
                "order_id": "0b6d2c1e-0000-0000-0000-000000000001",
                "booking_id": "ORD-ABC",
                "member_id": "m-1",
                "campaign_id": "c-1",
                "amount": "1250.5",
                "currency": "EUR",
                "state": "pending",
                "fulfilment_status": "delivery_failed",
                "needs_attention": True,
                "created_at": "2026-12-05T13:30:00+01:00",
            }
        ]
    )
    assert row.amount == "1,250.50 EUR"
    assert row.created == "2026-12-05 12:30 UTC"
    assert row.needs_attention


def test_a_timeline_step_says_what_changed() -> None:
    (created, cancelled) = views.timeline(
        [
            {"at": "2026-12-05T10:00:00Z", "event": "created", "state": "pending",
             "fulfilment_status": "awaiting_voucher", "actor": "ipa", "applied": True},
            {"at": "2026-12-05T10:05:00Z", "event": "cancelled", "state": "cancelled",
             "previous_state": "pending", "previous_fulfilment_status": "awaiting_voucher",
             "actor": "ops:otto", "reason": "duplicate", "applied": True},
        ]
    )  # fmt: skip
    assert created.change == "pending/awaiting_voucher"
    assert cancelled.change == "pending/awaiting_voucher → cancelled"
    assert (cancelled.actor, cancelled.reason) == ("ops:otto", "duplicate")


def test_only_pending_orders_offer_cancel_and_only_to_ops_and_admin() -> None:
    assert views.may_cancel({"state": "pending"}, {"ops"})
    assert views.may_cancel({"state": "pending"}, {"admin"})
    assert not views.may_cancel({"state": "pending"}, {"support_agent", "auditor"})
    assert not views.may_cancel({"state": "completed"}, {"ops"})


def test_ledger_lines_sign_debits_and_credits() -> None:
    lines = views.ledger_lines(
        [
            {"recorded_at": "2026-12-05T10:00:00Z", "entry_type": "award", "direction": "credit",
             "amount": "500", "balance_after": "500", "reason": "Q4 bonus"},
            {"recorded_at": "2026-12-05T11:00:00Z", "entry_type": "redemption", "direction": "debit",
             "amount": "120", "balance_after": "380", "reason_code": "storefront"},
        ]
    )  # fmt: skip
    assert [(line.amount, line.balance_after, line.reason) for line in lines] == [
        ("+500", "500", "Q4 bonus"),
        ("\u2212120", "380", "storefront"),
    ]


def test_health_rows_tell_ready_from_not_ready_and_silent() -> None:
    rows = views.health_rows({"order": ("u1", 200), "wallet": ("u2", 503), "support": ("u3", None)})
    assert [(r.name, r.ready, r.detail) for r in rows] == [
        ("order", True, "ready"),
        ("wallet", False, "not ready (503)"),
        ("support", False, "no answer"),
    ]


def test_a_failed_delivery_shows_the_masked_address_of_its_channel_and_why() -> None:
    (row,) = views.failed_deliveries(
        [
            {"delivery_id": "d-1", "booking_id": "BK-1", "member_id": "m-3", "channel": "email",
             "email": "b***@example.com", "phone": "+44***01", "last_reason_code": "hard_bounce",
             "attempts": 2, "failed_at": "2026-12-05T10:00:00Z"},
        ]
    )  # fmt: skip
    assert (row.recipient, row.reason, row.attempts) == ("b***@example.com", "hard bounce", 2)


def test_campaign_stock_warns_when_available_codes_reach_the_threshold() -> None:
    campaign = {"campaign_id": "c-1", "status": "active", "reward_type": "voucher", "low_stock_threshold": 20}
    low = views.campaign_stock(campaign, {"code_counts": {"available": 20, "issued": 5, "redeemed": 1}})
    plenty = views.campaign_stock(campaign, {"code_counts": {"available": 21}})
    assert (low.available, low.issued, low.redeemed, low.low_stock) == (20, 5, 1, True)
    assert not plenty.low_stock


def test_a_points_campaign_never_warns_about_codes() -> None:
    points = {"campaign_id": "p", "status": "active", "reward_type": "points", "low_stock_threshold": 0}
    assert not views.campaign_stock(points, {"code_counts": {}}).low_stock


def test_batch_progress_goes_validating_then_accepting_then_done() -> None:
    validating = views.batch_progress({"status": "validating", "received": 10, "validated": 4})
    accepting = views.batch_progress({"status": "accepting", "received": 10, "valid": 8, "accepted": 4})
    done = views.batch_progress({"status": "completed", "received": 10, "accepted": 8, "rejected": 2})
    assert [(p.step, p.percent, p.done) for p in (validating, accepting, done)] == [
        (1, 20, False),
        (2, 75, False),
        (3, 100, True),
    ]
    assert views.batch_progress({"status": "queued", "received": 10}).percent == 0


def test_a_ticket_shows_its_sla_target_most_at_risk() -> None:
    (line,) = views.ticket_lines(
        [
            {"ticket_id": "T-1", "member_id": "m-1", "category": "missing_delivery", "priority": "high",
             "state": "open", "assignee": None, "opened_at": "2026-12-05T10:00:00Z",
             "sla": {"first_response": {"status": "met", "due_at": "2026-12-05T11:00:00Z"},
                     "resolution": {"status": "warning", "due_at": "2026-12-05T18:00:00Z"}}},
        ]
    )  # fmt: skip
    assert (line.sla, line.due, line.assignee, line.category) == (
        "warning",
        "2026-12-05 18:00 UTC",
        "unassigned",
        "missing delivery",
    )


def test_members_may_only_reopen_or_close_resolved_tickets() -> None:
    assert views.ticket_moves("open", {"member"}) == ()
    assert views.ticket_moves("resolved", {"member"}) == ("open", "closed")
    assert views.ticket_moves("open", {"support_agent"}) == ("in_progress", "waiting_on_customer", "resolved")
    assert views.ticket_moves("open", {"auditor"}) == ()


def test_bars_are_scaled_to_the_longest_one() -> None:
    chart = views.bars(
        [{"value": "online", "records": 8}, {"value": "in_store", "records": 2}, {"value": None}]
    )
    assert [(b.label, b.value, b.width) for b in chart] == [
        ("online", 8, 100),
        ("in_store", 2, 25),
        ("—", 0, 0),
    ]
    assert views.bars([]) == []


def test_redemption_filters_keep_only_known_statuses_and_real_days() -> None:
    filters = views.redemption_filters(
        {"status": "stolen", "from": "2026-12-01", "to": "soon", "channel": "online"}
    )
    assert filters.api_params() == {"channel": "online", "from": "2026-12-01", "limit": "50"}


def test_a_reveal_follows_only_a_voucher_code_path() -> None:
    good = {"reveal": {"service": "voucher", "method": "POST", "path": "/v1/codes/abc/reveal"}}
    assert views.reveal_target(good) == "/v1/codes/abc/reveal"
    for bad in (
        {"reveal": None},
        {"reveal": {"service": "wallet", "path": "/v1/codes/abc/reveal"}},
        {"reveal": {"service": "voucher", "path": "/v1/campaigns/x/end"}},
        {"reveal": {"service": "voucher", "path": "/v1/codes/../reveal/x"}},
    ):
        assert views.reveal_target(bad) is None


def test_an_active_campaign_can_be_paused_or_ended_and_a_paused_one_resumed() -> None:
    assert views.campaign_actions("active") == ("pause", "end")
    assert views.campaign_actions("paused") == ("resume", "end")
    assert views.campaign_actions("ended") == ()
