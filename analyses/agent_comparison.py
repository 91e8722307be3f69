"""Finding: how faithfully the DT simulates its demonstrators (KL, argmax agreement per state).

Usage: python analyses/agent_comparison.py [--model memorydt|PATH] [--out DIR] [--seed N]
The computation is dtlens.report.sections.agent_comparison (the same code the HTML report runs).
"""

import sys

from dtlens.report.script import run_section_script

if __name__ == "__main__":
    sys.exit(run_section_script("agent_comparison"))
