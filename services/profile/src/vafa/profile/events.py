from vafa.kit.outbox import Outbox

outbox = Outbox(source="/vafa/profile")

CUSTOMERS_TOPIC = "profile.customers.v1"
PURCHASES_TOPIC = "profile.purchases.v1"
