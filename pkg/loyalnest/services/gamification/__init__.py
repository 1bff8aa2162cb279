"""The Gamification service: a merchant's items.

Scaffolded by `loyalnest new-service gamification`; the items are the example to rename.
"""
