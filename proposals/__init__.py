"""Region proposals: selective search (with the paper's 2x superpixels), MultiBox, merging
and the on-disk cache."""
