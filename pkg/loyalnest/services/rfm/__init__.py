"""The Rfm service: a merchant's items.

Scaffolded by `loyalnest new-service rfm`; the items are the example to rename.
"""
