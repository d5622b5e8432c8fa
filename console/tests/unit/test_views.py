"""View models: what the pages show, from the services' answers."""

from __future__ import annotations

from datetime import date

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


def test_a_bulk_cancel_needs_a_filter_beyond_the_pending_tab() -> None:
    assert not views.order_filters({"state": "pending"}).narrowed
    assert views.order_filters({"state": "pending", "campaign_id": "c-1"}).narrowed


def test_the_filter_travels_through_the_preview_as_form_fields() -> None:
    filters = views.order_filters({"state": "pending", "campaign_id": "c-1", "needs_attention": "1"})
    assert views.order_filters(filters.fields()) == filters


def test_the_bulk_cancel_preview_counts_what_would_be_cancelled_and_skipped() -> None:
    answer = {
        "dry_run": True,
        "matched": 5,
        "cancellable": 3,
        "cancelled": 0,
        "skipped_completed": 1,
        "skipped_cancelled": 1,
        "orders": [{"booking_id": f"B-{n}"} for n in range(3)],
    }
    preview = views.bulk_cancel_preview(answer, "withdrawn", shown=2)
    assert preview.headline == "3 pending orders would be cancelled"
    assert (preview.count, preview.confirm) == (3, "Confirm: cancel 3 orders")
    assert "1 completed and 1 already cancelled" in preview.details[0]
    assert preview.details[-1] == "First of them: B-0, B-1 …"


def test_a_confirmed_bulk_cancel_says_what_it_did_or_that_it_awaits_approval() -> None:
    done = {"cancelled": 3, "skipped_completed": 1, "skipped_cancelled": 0}
    assert views.bulk_cancel_outcome(done) == "3 orders cancelled; 1 already completed or cancelled."
    assert "second person" in views.bulk_cancel_outcome({"approval_id": "a-1", "status": "pending"})


def test_sla_lines_show_each_targets_share_and_mark_those_below_target() -> None:
    rows = [
        {
            "priority": "high",
            "tickets": 10,
            "first_response": {"met": 9, "missed": 1, "share_met": 0.9},
            "resolution": {"met": 7, "missed": 3, "share_met": 0.7},
        },
        {
            "priority": "low",
            "tickets": 2,
            "first_response": {"met": 0, "missed": 0, "share_met": None},
            "resolution": {"met": 2, "missed": 0, "share_met": 1.0},
        },
    ]
    high, low = views.sla_lines(rows, "priority")
    assert (high.group, high.first_response, high.resolution) == (
        "high",
        "90.0% (9 of 10)",
        "70.0% (7 of 10)",
    )
    assert high.below_target
    assert (low.first_response, low.below_target) == ("—", False)


def test_a_new_campaigns_form_becomes_the_create_body_leaving_blank_fields_out() -> None:
    form = {
        "campaign_id": " spring ",
        "name": "Spring",
        "brand": "",
        "face_value": "10.00",
        "currency": "eur",
        "default_channel": "sms",
        "low_stock_threshold": "25",
        "partner_ids": "p-1, p-2,",
        "expiry_kind": "days_after_issue",
        "expiry_days": "90",
    }
    assert views.campaign_body(form, creating=True) == {
        "campaign_id": "spring",
        "name": "Spring",
        "face_value": "10.00",
        "currency": "EUR",
        "default_channel": "sms",
        "low_stock_threshold": 25,
        "partner_ids": ["p-1", "p-2"],
        "expiry_policy": {"kind": "days_after_issue", "days": 90},
    }


def test_an_edit_changes_only_what_the_form_names() -> None:
    form = {
        "name": "",
        "budget": "5000",
        "partner_ids": "",
        "expiry_kind": "fixed_date",
        "expiry_date": "2027-01-31",
    }
    assert views.campaign_body(form, creating=False) == {
        "budget": "5000",
        "expiry_policy": {"kind": "fixed_date", "expires_at": "2027-01-31T23:59:59+00:00"},
    }
    assert views.campaign_body({"expiry_kind": "none"}, creating=False) == {"expiry_policy": {"kind": "none"}}
    assert views.campaign_body({"expiry_kind": "fixed_date", "expiry_date": "soon"}, creating=False) == {}


def test_code_stock_shows_real_and_test_codes_apart_and_only_statuses_that_have_codes() -> None:
    overview = {"code_counts": {"available": 4, "issued": 2, "void": 0}, "test_code_counts": {"available": 3}}
    assert [(s.status, s.real, s.test) for s in views.code_stock(overview)] == [
        ("available", 4, 3),
        ("issued", 2, 0),
    ]


def test_previews_of_code_operations_count_what_would_change() -> None:
    extension = views.expiry_preview({"dry_run": True, "would_change": 12}, "spring", date(2027, 1, 31))
    assert extension.headline == "12 codes of spring would expire at the end of 2027-01-31 (UTC)"
    assert (extension.count, extension.confirm) == (12, "Confirm: extend 12 codes")
    recovery = views.recovery_preview({"dry_run": True, "matched": 1, "code_ids": ["c"]}, "spring")
    assert (recovery.headline, recovery.count) == ("1 code of spring would be recovered", 1)
    assert views.recovery_preview({"matched": 0}, "spring").count == 0


def test_confirmed_code_operations_say_what_they_did() -> None:
    assert views.code_outcome({"dry_run": False, "changed": 3}) == "3 codes extended."
    recovered = {"dry_run": False, "matched": 2, "recovered": 2, "replaced": ["x"]}
    assert views.code_outcome(recovered) == "2 codes recovered; 1 orders given a fresh code."
    assert "approval" in views.code_outcome({"approval_id": "a-1"})


def test_an_import_report_names_the_rows_it_refused() -> None:
    report = {"imported": 2, "rejected": 1, "problems": [{"row": 3, "code": "duplicate", "message": "seen"}]}
    assert views.import_outcome(report) == ("ok", "2 codes imported, 1 rejected. row 3: seen")
    assert views.import_outcome({"imported": 0, "rejected": 1, "problems": []})[0] == "error"


def test_a_bulk_resend_counts_what_was_queued_and_why_the_rest_was_refused() -> None:
    results = [
        {"delivery_id": "a", "status": "queued", "channel": "email"},
        {"delivery_id": "b", "status": "queued", "channel": "sms"},
        {"delivery_id": "c", "status": "refused", "code": "resend_too_soon"},
    ]
    assert (
        views.resend_outcome(results) == "2 deliveries queued to be sent again. Refused: 1 resend too soon."
    )
    assert views.resend_outcome([]) == "0 deliveries queued to be sent again."


def test_each_role_is_offered_only_the_export_purposes_the_redemption_service_allows_it() -> None:
    assert list(views.export_purposes(["partner"])) == ["partner_settlement"]
    assert list(views.export_purposes(["finance"])) == ["partner_settlement", "finance_reconciliation"]
    assert list(views.export_purposes(["auditor"])) == ["audit"]
    assert views.export_purposes(["support_agent"]) == {}


def test_exports_show_their_purpose_and_progress_newest_first() -> None:
    jobs = [
        {
            "export_id": "e-1",
            "purpose": "partner_settlement",
            "format": "csv",
            "status": "running",
            "progress": {"rows_done": 5, "rows_total": 10, "percent": 50},
            "reason": "monthly settlement",
            "created_at": "2026-12-05T10:00:00+00:00",
        },
        {
            "export_id": "e-2",
            "purpose": "finance_reconciliation",
            "format": "jsonl",
            "status": "ready",
            "progress": {"rows_done": 3, "rows_total": 3, "percent": 100},
            "reason": "close",
            "created_at": "2026-12-05T11:00:00+00:00",
        },
    ]
    newest, older = views.export_lines(jobs)
    assert (newest.export_id, newest.purpose, newest.ready) == ("e-2", "Finance reconciliation", True)
    assert (older.purpose, older.rows, older.ready) == ("Partner settlement", "5 of 10", False)
