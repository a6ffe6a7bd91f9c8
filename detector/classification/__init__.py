"""The classification model in one place: its data (object crops of a detection dataset, image
folders), transforms, initialisation from weights, and ensembles of trained classifiers. Its
config is :class:`detector.config.ClassifierConfig`, its checkpoint format in
:mod:`detector.io.checkpoints`, its training loop :mod:`detector.engine.train_classifier`.

Names: "classifier" here is the image classifier of ``train-classifier``; R-CNN's region
classifier (a detector member) is :class:`detector.rcnn.RegionClassifier`."""
