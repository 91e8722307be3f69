"""Finding: every square — the model's action probabilities with the agent placed anywhere,
and GIFs of greedy play at the high and the low RTG.

Usage: python analyses/maps.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.maps (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("maps"))
