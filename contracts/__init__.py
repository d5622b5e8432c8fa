"""Wire contracts shared by every service: the envelope (`envelope`), topic names (`topics`),
the topic registry (`registry`), payload models by domain (`ipa`, `orders`, `vouchers`,
`delivery`, `wallet`, `redemption`, `support`, with shared value types in `values`), and the
committed JSON Schemas and AsyncAPI document (`python -m contracts.schemagen`)."""
