"""The web side: `campaignctl serve` (docs/web.md).

`keys` reads the signing keys, `tokens` signs what a link carries, `links` builds the URLs
that emails and Twilio are given; they import no web framework, so `send` builds links without
Starlette. `context` is what every route gets, `app` the Starlette application with its limits,
errors and access log, and one module per door: `unsubscribe`, `twilio`, `tracking`.
"""
