"""``python -m experiments.compare`` (what ``make compare`` runs)."""

import sys

from experiments.compare import main

sys.exit(main())
