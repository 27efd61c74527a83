#!/usr/bin/env python3
"""kernels/common.h holds ox_repro_erf exactly as scripts/gen-repro-erf.py
prints it: the coefficients in the kernel are the ones the script computes
(an edited coefficient, or a script changed without its output pasted
back, fails). Usage: check_generated.py ROOT"""
import subprocess
import sys

root = sys.argv[1]
out = subprocess.run([sys.executable, root + "/scripts/gen-repro-erf.py"], capture_output=True,
                     text=True, check=True).stdout
with open(root + "/kernels/common.h", encoding="utf-8") as f:
    header = f.read()
if out not in header:
    start = header.find("FN float ox_repro_erf(")
    print("FAIL: kernels/common.h's ox_repro_erf differs from scripts/gen-repro-erf.py's output"
          " (run it and paste the function back)" + ("" if start >= 0 else "; it is missing"))
    sys.exit(1)
print("ok: ox_repro_erf in kernels/common.h is scripts/gen-repro-erf.py's output")
