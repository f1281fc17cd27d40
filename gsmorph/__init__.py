"""GSMorph benchmarking suite: gradient surgery for deformable registration, its
baselines, and the data, evaluation and reporting around them."""

__version__ = "0.1.0"
