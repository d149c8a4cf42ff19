from vafa.kit.testing.contract import ServiceContract


class TestContract(ServiceContract):
    """The kit's service contract: ready on its migrated database, metrics, problem+json
    errors, /v1 routes, the worker relaying the outbox."""
