"""Finding: the behavioural clone side by side with the decision transformer.

Usage: python analyses/clone.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.clone (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("clone"))
