"""A tiny section added to the declared ones, for tests/test_study_runner.py: two small sweeps of real
presets on the tiny IDX data (SLOPESTUDY_DATA), one summary and one marker block.

    python -m tests.helpers.study_tiny --root DIR run tiny --launcher basic --echo
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from slopestudy.study.runner import main
from slopestudy.study.sections import SECTIONS, Section, SummaryFolder
from slopestudy.study.sweeps import Sweep

# A net of width 16 on 192 training images: seconds per job
SMALL = ("width=16", "batch_size=32", "probe_size=64", "log_every=3", "hist_every=6", "data.val_size=64",
         "data.fetch=false", "data.verify_md5=false")  # fmt: skip
# multirun/lr_tune/all: 2 jobs of 1 epoch
FIRST = Sweep("legacy/lr_tune", ("init=pytorch", "depth=2", "lr=0.01,0.1", *SMALL))
# multirun/slope_depth/kaiming: a 1-epoch job, then a 2-epoch one (the one a test stops mid-way)
SECOND = Sweep("legacy/slope_depth", ("init=kaiming", "lr=0.01", "slope=0.2", "depth=2", "seed=0",
                                      "epochs=1,2", *SMALL))  # fmt: skip


def tiny_block(results: Path) -> dict[str, str]:
    path = results / "tiny" / "runs.csv"
    if not path.exists():
        return {"tiny": "not run yet"}
    runs = pd.read_csv(path)
    counts = runs["status"].value_counts().items()
    return {"tiny": f"{len(runs)} runs: " + ", ".join(f"{n} {status}" for status, n in counts)}


TINY = Section("tiny", 1, "a tiny test section", summaries=(SummaryFolder("tiny", sweeps=(FIRST, SECOND)),),
               blocks=tiny_block)  # fmt: skip

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sections={**SECTIONS, "tiny": TINY}))
