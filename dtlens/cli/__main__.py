"""``python -m dtlens.cli``."""

import sys

from dtlens.cli import main

sys.exit(main())
