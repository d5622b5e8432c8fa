"""Local delivery sinks (DESIGN.md §5): an SMTP server that keeps every message as a `.eml` file and
a Twilio-compatible SMS/WhatsApp provider that keeps every message as JSON, both under `var/`.

They stand in for the real providers on a developer's machine and in tests, including their failures:
the provider answers with invalid numbers, unreachable WhatsApp accounts, 429s, 5xx and timeouts on
magic numbers or when told to through its control endpoint; the SMTP sink bounces or defers magic
addresses.
"""
