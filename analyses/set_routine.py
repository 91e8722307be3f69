"""Finding: the "set routine" and the decision square.

Usage: python analyses/set_routine.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.set_routine (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("set_routine"))
