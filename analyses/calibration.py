"""Finding: the model is calibrated only as far as its training data demonstrates.

Usage: python analyses/calibration.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.calibration (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("calibration"))
