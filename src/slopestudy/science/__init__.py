"""The science: mean-field theory (signal, kernel, TAT), statistics and the profile fits.
numpy/scipy only, no torch: the summaries and the published page use it without a model."""
