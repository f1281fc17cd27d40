"""Paper artifacts from the metrics table and the run folders: statistics files,
Table 1 (LaTeX, Markdown, CSV), figures and their captions. numpy/pandas/matplotlib
only: no torch import."""
