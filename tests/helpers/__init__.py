"""What the tests share: tiny data files, child processes with deadlines, small nets and
synthetic run folders. Test modules import from here (never from each other or conftest.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: train.py, conf/, results/
REAL_DATA = ROOT / "data"
