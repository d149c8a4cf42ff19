# The kit's pytest plugin serves every package's tests: real PostgreSQL and Kafka, a migrated
# database per service. Each service's tests/conftest.py names its ServiceSpec.
pytest_plugins = ["vafa.kit.testing.plugin"]
