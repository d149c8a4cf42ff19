"""Profile: the identity authority. It turns shop customers, emails and phones into one
customer id, keeps each customer's file (identities, purchase history, timeline) and publishes
`profile.customers.v1` and `profile.purchases.v1`."""
