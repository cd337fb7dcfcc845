"""The shops a loyalty program plugs into (Shopify, WooCommerce).

Webhooks come in as our events; reward discount codes go out.
"""
