from vafa.kit.cli import main
from vafa.loyalty.spec import SPEC

main(SPEC)
