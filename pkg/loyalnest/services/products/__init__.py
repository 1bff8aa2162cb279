"""The Products service: a merchant's items.

Scaffolded by `loyalnest new-service products`; the items are the example to rename.
"""
