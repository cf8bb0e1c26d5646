"""python -m CardiacReconstructionLib == cardiac-recon."""
import sys

from .cli import main

sys.exit(main())
