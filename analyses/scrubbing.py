"""Finding: causal scrubbing of "the instruction reaches the decision through layer 0".

Usage: python analyses/scrubbing.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.scrubbing (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("scrubbing"))
