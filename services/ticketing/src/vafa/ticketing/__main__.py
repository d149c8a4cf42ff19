from vafa.kit.cli import main
from vafa.ticketing.spec import SPEC

main(SPEC)
