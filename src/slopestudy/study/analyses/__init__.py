"""The published analyses: what results/README.md and its generated pages say, computed from the
committed summaries (results/<summary>/*.csv) alone, so `python -m slopestudy.study report`
regenerates them in seconds and a test can check that the page still says what its data says.

- page:     the Markdown grid every analysis renders with, and the marker blocks of the page;
- fair:     section 2, the tuned comparison (SGD, the never-learning cells trained longer, Adam);
- learned:  section 7, PReLU's learned slopes and each PReLU cell against its fixed-slope twin;
- headline: results/headline.md, the compact cross-summary tables sections 1-5 quote.
"""
