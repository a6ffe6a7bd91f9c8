"""Metrics only, arrays in and numbers out: ILSVRC DET, PASCAL VOC, COCO AP, proposal recall,
classification accuracy. Imports nothing of ours."""
