"""R-CNN detection on Inception: datasets and file formats, region sampling and warping, the
region classifier and its ensemble, training and inference loops, and the console scripts
(``detector.cli``)."""
