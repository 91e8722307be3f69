"""Finding: how MemoryDT learned to remember (progress measures over training checkpoints).

Usage: python analyses/dynamics.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.dynamics (the same code the HTML report runs);
it reads the dynamics.json beside the model's weights (``dtlens dynamics`` makes one).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("dynamics"))
