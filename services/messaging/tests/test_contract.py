from vafa.kit.testing.contract import ServiceContract


class TestContract(ServiceContract):
    """The service runs as a real app on its own migrated database and relays its outbox; its
    features arrive with their own issue."""
