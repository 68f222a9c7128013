"""Where things are: the package (its code hash covers every module under it) and the repository
(train.py, conf/, results/, multirun/). One place, so moving a module cannot change either."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parents[1]  # src/slopestudy -> the checkout
CONF = REPO / "conf"
