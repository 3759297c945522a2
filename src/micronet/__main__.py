"""``python -m micronet`` (also what ``torchrun -m micronet train`` runs)."""

import sys

from .cli import main

sys.exit(main())
