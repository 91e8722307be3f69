"""Finding: the "look back" exception at the decision square.

Usage: python analyses/look_back.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.look_back (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("look_back"))
