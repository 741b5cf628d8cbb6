"""Mail coming back: bounces (RFC 3464), complaints (RFC 5965) and hosted relays' reports.

Pure parsing and signature checks; `odiseo.bounce_service` records what they find.
"""
