"""Generated protobuf bindings. Importing this package registers every message type in the
default descriptor pool, which is how the CloudEvents codec finds a class by its ce_type."""

from vafa.events.v1 import (  # noqa: F401
    common_pb2,
    inventory_pb2,
    loyalty_pb2,
    profile_pb2,
    segmentation_pb2,
    shop_orders_pb2,
)
