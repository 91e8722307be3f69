"""Finding: activation patching of the instruction swap (S5 -> S9?) and of the RTG change.

Usage: python analyses/patching.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.patching (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("patching"))
