import sys

from slopestudy.summary.summarize import main

sys.exit(main())
