"""The local sinks' default ports, readable without importing the sinks (the SMTP one needs the
`local` extra, which service images leave out)."""

SMTP_SINK_PORT = 1025
FAKE_PROVIDER_PORT = 8190
