"""Finding: modality-specific attention, and how the RTG token changes attention maps.

Usage: python analyses/attention.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.attention (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("attention"))
