from vafa.inventory.spec import SPEC
from vafa.kit.cli import main

main(SPEC)
