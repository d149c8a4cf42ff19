"""Test helpers shared by every service: the pytest plugin (real migrated database, real
broker) and small factories. Enable with `pytest_plugins = ["vafa.kit.testing.plugin"]`."""
