from vafa.kit.outbox import Outbox

outbox = Outbox(source="/vafa/inventory")

STOCK_TOPIC = "inventory.stock.v1"
