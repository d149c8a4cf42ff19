"""Messaging: SMS and email channels, templates, campaigns and the delivery log (its features arrive with the messaging issue)."""
