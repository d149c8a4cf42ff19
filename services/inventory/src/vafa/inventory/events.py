from vafa.kit.outbox import Outbox

outbox = Outbox(source="/vafa/inventory")

STOCK_TOPIC = "inventory.stock.v1"
CATALOG_TOPIC = "inventory.catalog.v1"
ORDERS_TOPIC = "shop.orders.v1"
