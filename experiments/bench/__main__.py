"""``python -m experiments.bench`` (what ``make bench`` runs)."""

import sys

from experiments.bench.cli import main

sys.exit(main())
