from vafa.kit.outbox import Outbox

outbox = Outbox(source="/vafa/loyalty")

LOYALTY_TOPIC = "loyalty.events.v1"
PURCHASES_TOPIC = "profile.purchases.v1"
CUSTOMERS_TOPIC = "profile.customers.v1"
CATALOG_TOPIC = "inventory.catalog.v1"
