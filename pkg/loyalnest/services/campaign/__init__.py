"""The Campaign service: a merchant's items.

Scaffolded by `loyalnest new-service campaign`; the items are the example to rename.
"""
