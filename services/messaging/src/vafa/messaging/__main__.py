from vafa.kit.cli import main
from vafa.messaging.spec import SPEC

main(SPEC)
