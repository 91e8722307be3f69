"""Finding: at RTG 0, off the set routine, the model's preferences are diffuse.

Usage: python analyses/rtg_entropy.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.rtg_entropy (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("rtg_entropy"))
