"""The Orchard Console: server-rendered pages for people, signed in through OpenID Connect.

It owns no data and publishes no event: every page reads and every form acts through the six services'
public HTTP APIs with the signed-in person's own token (DESIGN.md §2, §5 "Console").
"""
