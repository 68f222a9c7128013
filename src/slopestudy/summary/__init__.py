"""One sweep's summary: collect the run records, cells, tuning, tables, figures, the summary's
TensorBoard run and the end-of-sweep callback. `python -m slopestudy.summary FOLDER... --out DIR`."""
