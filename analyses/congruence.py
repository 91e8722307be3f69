"""Finding: neuron-action congruence grows with depth, most for Left, Right and Forward.

Usage: python analyses/congruence.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.congruence (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("congruence"))
