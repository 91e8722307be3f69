"""Finding: what the decision token holds, read by linear probes against two baselines.

Usage: python analyses/probes.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.probes (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("probes"))
