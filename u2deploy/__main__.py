"""`python -m u2deploy` (also what `torchrun -m u2deploy train` runs)."""

import sys

from .cli import main

sys.exit(main())
