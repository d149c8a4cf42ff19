from vafa.kit.cli import main
from vafa.profile.spec import SPEC

main(SPEC)
