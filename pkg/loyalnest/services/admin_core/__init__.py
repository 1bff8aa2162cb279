"""The AdminCore service: a merchant's items.

Scaffolded by `loyalnest new-service admin-core`; the items are the example to rename.
"""
