"""Finding: steering retargets the agent; does the RTG still control success?

Usage: python analyses/steering.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.steering (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("steering"))
