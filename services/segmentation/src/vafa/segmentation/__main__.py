from vafa.kit.cli import main
from vafa.segmentation.spec import SPEC

main(SPEC)
