"""The whole-pipeline bench's table, targets and plot."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from .pipeline_stats import INFRA, cpu_totals, is_service, process_kind

TARGET_ORDERS_PER_S = 600.0
"""Issue 15: the burst's orders/s end to end on this machine."""
TARGET_ORDERS_PER_S_ON_THE_WAY = 1000.0
"""The earlier, further target, kept as a second reference."""
TARGET_BURST_ORDERS = 20_000
TARGET_RATIO = 0.5
TARGET_STEADY_MS = ((100.0, "p50_ms", 150.0), (100.0, "p99_ms", 500.0), (300.0, "p99_ms", 1000.0))
"""(rate in orders/s, latency percentile, at most this many ms)."""
TARGET_CPU_MS_PER_ORDER = 4.0
"""Summed over Orchard's services, Kafka and PostgreSQL; the local sinks are someone else's servers."""
TARGET_CSV_ROWS = 100_000
TARGET_CSV_VALIDATED_S = 10.0
TARGET_CSV_DELIVERED_S = 120.0
TARGET_RSS_BYTES = 150 * 10**6
MB = 10**6

CEILING_EXPLANATION = """\
Raw baseline: every order is M Kafka messages (measured above: ipa.record_submitted plus every event the
pipeline publishes for it), and every one of them is produced only after one committed state change (its
outbox row). With nothing of ours in between, an order therefore costs at least M raw aiokafka
produce+consume round trips and M raw single-row INSERT transactions (8 concurrent workers, like a
service's pool). The ceiling is min(kafka msgs/s / M, pg commits/s / M). It flatters the baseline: it
ignores the fan-out (a message read by several consumer groups counts once), the HTTP/SMTP send, codes,
crypto and validation; our batching (one transaction per consumed batch) is what can take us past it."""


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _latency(lat: dict[str, float]) -> str:
    return "  ".join(
        f"{k.removesuffix('_ms')} {lat[k]:.0f} ms" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
    )


def steady_phases(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The steady phases in the order they ran; records from before `--rate` took a list hold one, as a
    dict."""
    steady = r.get("steady") or []
    return steady if isinstance(steady, list) else [steady]


def phase_for(phases: list[dict[str, Any]], rate: float) -> dict[str, Any] | None:
    """The phase run at `rate`, or else the one nearest to it (the target line then says so)."""
    return min(phases, key=lambda s: abs(s["rate"] - rate), default=None)


def _header(r: dict[str, Any]) -> list[str]:
    lines = [
        f"Orchard whole-pipeline bench — {r['system']}, {r['machine']['cpus']} CPUs, mix {r['mix']},"
        f" load average at the end {r['machine']['load_average_end'][0]:.1f}",
    ]
    if r["system_env"]:
        lines.append(
            "system env set by the bench: " + " ".join(f"{k}={v}" for k, v in r["system_env"].items())
        )
    return lines


def _burst_lines(b: dict[str, Any]) -> list[str]:
    return [
        "",
        f"burst: {b['orders']} allocations on ipa.record_submitted → completed (delivered)",
        f"  {b['orders_per_s']:.0f} orders/s end to end ({b['seconds']:.1f} s; all submitted in"
        f" {b['submit_seconds']:.1f} s)",
        f"  latency submission → completed: {_latency(b['latency'])}",
        f"  Kafka messages per order M = {b['kafka_messages_per_order']:.2f}: "
        + ", ".join(f"{t} {n:.2f}" for t, n in b["messages_per_order"].items()),
        "  database transactions committed per order (all services, pg_stat_database):"
        f" {b['db_commits_per_order']:.2f}",
    ]


def _steady_lines(phases: list[dict[str, Any]]) -> list[str]:
    lines = []
    for s in phases:
        lines += [
            "",
            f"steady: {s['rate']:g} orders/s offered for {s['duration_s']:g} s ({s['orders']} orders,"
            f" {s['offered_per_s']:.0f}/s sent, {s['completed_per_s']:.0f}/s completed)",
            f"  latency submission → completed: {_latency(s['latency'])}",
        ]
        if drift := s.get("latency_drift"):
            lines.append(
                f"  latency slope {drift['slope_ms_per_s']:+.1f} ms/s (flat ≈ 0); p50 of the orders sent in"
                f" the first {drift['window_s']:g} s {drift['p50_first_ms']:.0f} ms,"
                f" in the last {drift['window_s']:g} s {drift['p50_last_ms']:.0f} ms"
            )
    return lines


def _cell(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def _process_table(r: dict[str, Any], phases: list[dict[str, Any]]) -> list[str]:
    """CPU per process in the burst and in each steady phase, with the per-order sums (Orchard with
    Kafka and PostgreSQL against the target; the sinks apart), and each process's RSS."""
    b = r["burst"]
    peak, final = r["peak_rss_bytes"], r.get("final_rss_bytes", {})
    per_order = [b["cpu_ms_per_order"], *(s.get("cpu_ms_per_order", {}) for s in phases)]
    labels = ["burst", *(f"{s['rate']:g}/s" for s in phases)]
    lines = [
        "",
        f"{'':34} {'CPU s':>7}  {'CPU ms per order':<{8 * len(labels)}}  {'RSS MB':>15}",
        f"{'process':34} {'burst':>7}  " + "".join(f"{x:>8}" for x in labels) + f"  {'peak':>7} {'end':>7}",
    ]
    names = set(b["cpu_s"]) | set(peak) | {n for p in per_order for n in p}

    def row(label: str, cpu: float | None, ms: list[float | None], rss: list[float | None]) -> str:
        text = f"{label:34} {_cell(cpu, 7, 1)}  " + "".join(_cell(x, 8, 2) for x in ms)
        return text + ("  " + " ".join(_cell(x, 7, 0) for x in rss) if rss else "")

    for kind, total_label in (("orchard", "Orchard + Kafka + Postgres"), ("sink", "local sinks (apart)")):
        members = sorted((n for n in names if process_kind(n) == kind), key=lambda n: (n in INFRA, n))
        if not members:
            continue
        for name in members:
            rss = [reading[name] / MB if name in reading else None for reading in (peak, final)]
            lines.append(row(name, b["cpu_s"].get(name), [p.get(name) for p in per_order], rss))
        lines.append(
            row(
                f"  sum, {total_label}",
                sum(b["cpu_s"].get(n, 0.0) for n in members),
                [cpu_totals(p)[kind] for p in per_order],
                [],
            )
        )
    return lines


def _csv_lines(c: dict[str, Any]) -> list[str]:
    return [
        "",
        f"CSV: {c['rows']} rows ({c['csv_bytes'] / MB:.1f} MB) through POST /v1/ipa/batches",
        f"  uploaded (202) {c['upload_s']:.1f} s; every row validated {c['validated_s']:.1f} s;"
        f" batch completed (orders accepted) {c['accepted_s']:.1f} s;"
        f" every order delivered {c['delivered_s']:.1f} s",
    ]


def _baseline_lines(r: dict[str, Any]) -> list[str]:
    base, ceiling = r["baselines"], r["ceiling"]
    return [
        "",
        f"raw baselines, same broker and server, {base['messages']} messages"
        f" of {base['message_bytes']:.0f} bytes"
        " (the burst's ipa.record_submitted envelopes):",
        f"{'':34} {'mean':>9} {'before':>9} {'after':>9}",
        *(
            f"  {label:32} {base[key]:9.0f} {base.get('before', base)[key]:9.0f}"
            f" {base.get('after', base)[key]:9.0f}  {unit}"
            for label, key, unit in (
                ("aiokafka produce+consume", "kafka_msgs_per_s", "msgs/s"),
                ("asyncpg 1-row INSERT txns, 1", "pg_commits_per_s_1", "commits/s"),
                ("asyncpg 1-row INSERT txns, 8", "pg_commits_per_s_8", "commits/s"),
            )
        ),
        f"  ceiling: kafka {ceiling['kafka_orders_per_s']:.0f} orders/s,"
        f" postgres {ceiling['pg_orders_per_s']:.0f}"
        f" orders/s (M = {ceiling['hops_per_order']:.2f}) → {ceiling['orders_per_s']:.0f} orders/s,"
        f" bound by {ceiling['bound_by']}",
        "",
        "ratios (ours / raw):",
        *(f"  {k:46} {v:7.3f}" for k, v in r["ratios"].items()),
        "",
        CEILING_EXPLANATION,
    ]


def _burst_targets(r: dict[str, Any]) -> list[str]:
    b = r["burst"]
    ratio = r["ratios"]["orders_per_s / raw_baseline_ceiling"]
    note = "" if b["orders"] == TARGET_BURST_ORDERS else f" (for {b['orders']} orders, not 20,000)"
    return [
        f"  burst ≥{TARGET_ORDERS_PER_S:.0f} orders/s end to end (this machine):"
        f" {b['orders_per_s']:.0f}{note} — {_met(b['orders_per_s'] >= TARGET_ORDERS_PER_S)}",
        f"  burst ≥{TARGET_ORDERS_PER_S_ON_THE_WAY:.0f} orders/s end to end (on the way):"
        f" {b['orders_per_s']:.0f}{note} — {_met(b['orders_per_s'] >= TARGET_ORDERS_PER_S_ON_THE_WAY)}",
        f"  ≥{TARGET_RATIO} of the raw baseline ceiling: {ratio:.2f} — {_met(ratio >= TARGET_RATIO)}",
    ]


def _steady_targets(phases: list[dict[str, Any]]) -> list[str]:
    lines = []
    for rate, key, limit in TARGET_STEADY_MS:
        s = phase_for(phases, rate)
        if s is None:
            continue
        note = "" if s["rate"] == rate else f" (measured at {s['rate']:g}/s, not {rate:g}/s)"
        value = s["latency"][key]
        lines.append(
            f"  {key.removesuffix('_ms')} ≤{limit:.0f} ms at {rate:g} orders/s: {value:.0f} ms{note}"
            f" — {_met(value <= limit)}"
        )
    lines += [
        f"  latency flat at {phase['rate']:g} orders/s: slope"
        f" {phase['latency_drift']['slope_ms_per_s']:+.1f} ms/s (reported; the issue sets no threshold)"
        for phase in phases
        if "latency_drift" in phase
    ]
    return lines


def _cpu_targets(r: dict[str, Any], phases: list[dict[str, Any]]) -> list[str]:
    measured = [("burst", r["burst"]), *((f"{s['rate']:g}/s", s) for s in phases)]
    lines = []
    for label, phase in measured:
        if "cpu_ms_per_order" not in phase:
            continue
        totals = cpu_totals(phase["cpu_ms_per_order"])
        lines.append(
            f"  CPU ≤{TARGET_CPU_MS_PER_ORDER:g} ms/order, Orchard + Kafka + Postgres ({label}):"
            f" {totals['orchard']:.2f} ms — {_met(totals['orchard'] <= TARGET_CPU_MS_PER_ORDER)}"
            f" (sinks apart: {totals['sink']:.2f} ms)"
        )
    return lines


def _other_targets(r: dict[str, Any]) -> list[str]:
    lines = []
    if "csv" in r:
        c = r["csv"]
        note = "" if c["rows"] == TARGET_CSV_ROWS else f" (for {c['rows']} rows, not 100,000)"
        lines += [
            f"  CSV validated ≤{TARGET_CSV_VALIDATED_S:.0f} s: {c['validated_s']:.1f} s{note}"
            f" — {_met(c['validated_s'] <= TARGET_CSV_VALIDATED_S)}",
            f"  CSV delivered ≤{TARGET_CSV_DELIVERED_S:.0f} s: {c['delivered_s']:.1f} s{note}"
            f" — {_met(c['delivered_s'] <= TARGET_CSV_DELIVERED_S)}",
        ]
    peaks = {n: v for n, v in r["peak_rss_bytes"].items() if is_service(n)}
    final = {n: v for n, v in r.get("final_rss_bytes", {}).items() if is_service(n)}
    worst = max(peaks, key=lambda n: peaks[n], default=None)
    if worst:
        at_end = max(final, key=lambda n: final[n], default=None)
        end_note = f" (largest at the end: {at_end} {final[at_end] / MB:.0f} MB)" if at_end else ""
        lines.append(
            f"  ≤150 MB RSS per service: largest peak {worst} {peaks[worst] / MB:.0f} MB"
            f" — {_met(peaks[worst] <= TARGET_RSS_BYTES)}{end_note}"
        )
    return lines


def _profile_lines(b: dict[str, Any]) -> list[str]:
    if not b.get("hot_spots"):
        return []
    lines = [
        "",
        "profile (py-spy during the burst, share of busy samples; self = on top of the stack, ours ="
        " our function anywhere on it, send = in a socket send() called nearest from that function):",
    ]
    for name, spots in b["hot_spots"].items():
        lines.append(f"  {name}:")
        lines += [f"    self   {share:5.1%}  {frame}" for frame, share in spots["self"][:5]]
        lines += [f"    ours   {share:5.1%}  {frame}" for frame, share in spots["ours_inclusive"][:5]]
        lines += [f"    send   {share:5.1%}  {frame}" for frame, share in spots["socket_sends_by_caller"][:3]]
    if graphs := b.get("flame_graphs"):
        lines += ["", "flame graphs of the three costliest profiled processes (CPU during the burst):"]
        lines += [f"  {name:16} {b['cpu_s'][name]:6.1f} s  {path}" for name, path in graphs.items()]
    return lines


def render(r: dict[str, Any]) -> str:
    phases = steady_phases(r)
    lines = [*_header(r), *_burst_lines(r["burst"]), *_process_table(r, phases), *_steady_lines(phases)]
    if "csv" in r:
        lines += _csv_lines(r["csv"])
    lines += _baseline_lines(r)
    lines += ["", "targets (reported, never asserted):", *_burst_targets(r), *_steady_targets(phases)]
    lines += [*_cpu_targets(r, phases), *_other_targets(r)]
    if "sinks" in r:
        lines += [
            "",
            f"sinks received: {r['sinks']['emails']} e-mails, {r['sinks']['messages']} SMS/WhatsApp",
        ]
    return "\n".join(lines + _profile_lines(r["burst"]))


def write_plot(r: dict[str, Any], path: Path) -> None:
    """Completed orders per second and each consumer group's lag over the run, phases shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = r["samples"]
    if len(samples) < 2:
        return
    t = [s["t"] for s in samples]
    rate = [0.0] + [
        (b["completed"] - a["completed"]) / max(1e-6, b["t"] - a["t"]) for a, b in itertools.pairwise(samples)
    ]
    groups = sorted({g for s in samples for g in s["lag"] if g != "error"})
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(12, 11), sharex=True)
    top.plot(t, rate, color="tab:green")
    top.set_ylabel("orders completed / s")
    top.set_title("Orchard whole-pipeline bench")
    statuses = sorted({k for s in samples for k in s.get("in_flight", {})})
    for status in statuses:
        middle.plot(t, [s.get("in_flight", {}).get(status, 0) for s in samples], label=status)
    middle.set_ylabel("orders waiting, by status")
    if statuses:
        middle.legend(fontsize=7)
    colours = plt.get_cmap("tab20")
    for i, g in enumerate(groups):  # twenty colours: no two groups share one
        series = [s["lag"].get(g, 0) for s in samples]
        if max(series) > 0:
            bottom.plot(t, series, label=g, color=colours(i % 20), linestyle="-" if i < 20 else "--")
    bottom.set_ylabel("consumer lag (messages)")
    bottom.set_xlabel("seconds since the bench started")
    if bottom.get_legend_handles_labels()[0]:
        bottom.legend(fontsize=7, ncol=2)
    phases: list[tuple[str, float, float]] = []
    for s in samples:
        if phases and phases[-1][0] == s["phase"]:
            phases[-1] = (s["phase"], phases[-1][1], s["t"])
        else:
            phases.append((s["phase"], s["t"], s["t"]))
    for i, (name, start, end) in enumerate(phases):
        if name.startswith(("burst", "steady", "csv")):
            for ax in (top, middle, bottom):
                ax.axvspan(start, end, alpha=0.08 + 0.04 * (i % 2), color="tab:blue")
            top.text(start, top.get_ylim()[1] * 0.95, name, fontsize=8, va="top")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
