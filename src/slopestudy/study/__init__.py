"""The published study: the sections (their sweeps and summaries), the runner, the analyses and
the page. `python -m slopestudy.study status|run|report`."""
