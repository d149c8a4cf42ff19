from vafa.kit.outbox import Outbox

outbox = Outbox(source="/vafa/ticketing")
