import sys

from vafa.kit.cli import main
from vafa.loyalty.spec import SPEC

if sys.argv[1:2] == ["reconcile"]:
    from vafa.loyalty.points import cli

    sys.exit(cli.main(sys.argv[2:]))
main(SPEC)
