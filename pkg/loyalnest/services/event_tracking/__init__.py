"""The EventTracking service: a merchant's items.

Scaffolded by `loyalnest new-service event-tracking`; the items are the example to rename.
"""
