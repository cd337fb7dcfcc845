"""The shops a loyalty program plugs into (Shopify, WooCommerce): webhooks in, discount codes out."""
