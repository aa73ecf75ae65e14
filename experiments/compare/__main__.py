"""``python -m experiments.compare`` (what ``make compare`` runs)."""

import sys

from experiments.compare.cli import main

sys.exit(main())
