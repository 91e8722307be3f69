"""Finding: the instruction moves from S5 straight to S9 (path patching).

Usage: python analyses/path_patching.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.path_patching (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("path_patching"))
