"""Inventory: the product catalogue and stock, moved by order events."""
