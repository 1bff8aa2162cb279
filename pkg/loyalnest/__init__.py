"""LoyalNest: loyalty and rewards backend for Shopify merchants."""

__version__ = "0.1.0"
