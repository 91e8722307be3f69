"""Finding: the instruction-swap circuit (EAP-IG, checked by ACDC and exact faithfulness).

Usage: python analyses/circuit.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.circuit (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("circuit"))
