import sys

from slopestudy.study.runner import main

sys.exit(main())
