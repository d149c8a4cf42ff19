"""Bindings generated from proto/ (package vafa.events.v1). Regenerate with `make proto`."""
