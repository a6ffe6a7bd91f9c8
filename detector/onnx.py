"""ONNX out: a detector checkpoint's networks as one ONNX graph, and the same pipeline run
through onnxruntime (``export-model``, ``detect --model FILE.onnx``).

The graph holds the networks only: every member's
- fast kind: trunk, reduction, roi_align of the boxes on the tap and the box head, inputs
  ``image`` (1, 3, H, W: resized and normalised) and ``boxes`` (N, 4: xyxy in that image's
  pixels), outputs ``logits_k`` (N, C + 1) and ``deltas_k`` (N, C, 4) for member k; H, W and N
  are dynamic;
- R-CNN: the region classifier, input ``crops`` (B, 3, S, S: the warped regions), the same
  outputs for the B crops, B dynamic.
Everything shape-dependent stays in Python, shared with the PyTorch path: proposals, the
working copy, resizing (or warping), the members' average and post-processing. The sidecar
``FILE.onnx.json`` holds the classes, the whole config (preprocessing: sizes, context, the
normalisation; postprocessing: NMS, thresholds) and the graph's names, so that
``detect --model FILE.onnx`` needs nothing else.

Exported with torch's TorchScript-based exporter (``dynamo=False``, opset 17: roi_align's
``aligned=True`` is ONNX RoiAlign's ``half_pixel`` mode, opset 16 and later): the dynamo
exporter's symbolic shapes fail on GoogLeNet's ceil-mode max pools with a dynamic H and W
(``Expected op to be '==', got <``, torch 2.14), while the traced graph computes its shapes
at run time and matches PyTorch to about 1e-6.
"""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import torch
from torch import nn

from backbone.config import from_dict, to_dict
from backbone.errors import UserError

from .config import DetectorConfig
from .ensemble import RegionOutputs, average
from .kinds import kind_of
from .model import Detector
from .rcnn.warp import warp_regions
from .fast.model import upsample_to_min_input
from .transforms import resize_factor, resize_image, to_tensor_image

#: the sidecar's format marker and version
FORMAT, VERSION = "googlenet-det-onnx", 1
OPSET = 17


def sidecar_path(path: str) -> str:
    return path + ".json"


class _FastGraph(nn.Module):
    """Every fast member on one image: (image, boxes) -> logits_0, deltas_0, logits_1, ..."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, image, boxes):
        outs = []
        for m in self.members:
            maps = m._run_trunk(image)
            lg, dl = m.predictor(m.box_head(m._pool(maps, boxes)))
            outs += [lg, dl]
        return tuple(outs)


class _RcnnGraph(nn.Module):
    """Every R-CNN member on a batch of warped crops -> logits_0, deltas_0, logits_1, ..."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, crops):
        outs = []
        for m in self.members:
            out = m(crops)
            deltas = out.deltas if out.deltas is not None else out.logits.new_zeros((len(crops), m.num_classes, 4))
            outs += [out.logits, deltas]
        return tuple(outs)


def export_onnx(detector: Detector) -> tuple[bytes, dict]:
    """``detector``'s networks as ONNX bytes, and the sidecar for ``FILE.onnx.json`` (the caller
    writes both, through the output rule: ``export-model``)."""
    cfg, kind = detector.cfg, detector.cfg.model.kind
    if cfg.proposals.uses_multibox:
        raise UserError("the model's proposals use MultiBox, whose network is not exported yet "
                        "(export a model with proposals.method ss)")
    if cfg.proposals.uses_trunk:
        raise UserError("the model proposes from its trunk (proposals.method trunk), whose proposal "
                        "head is not exported yet (export a model with proposals.method ss)")
    members = [m.float().eval() for m in detector.ensemble.members]
    n = len(members)
    outputs = [f"{what}_{i}" for i in range(n) for what in ("logits", "deltas")]
    if kind == "fast":
        if len(members[0].taps) > 1:
            raise UserError(f"model.fast.tap {members[0].taps} is a feature pyramid, whose level "
                            "assignment is not exported yet (one tap is)")
        graph, inputs = _FastGraph(members).eval(), ["image", "boxes"]
        h, w = max(members[0].min_input, 96), max(members[0].min_input, 128)
        args = (torch.zeros(1, 3, h, w), torch.tensor([[0.0, 0.0, w / 2, h / 2], [w / 4, h / 4, w, h]]))
        axes = {"image": {2: "height", 3: "width"}, "boxes": {0: "boxes"}}
        axes.update({o: {0: "boxes"} for o in outputs})
    else:
        s = cfg.model.rcnn.input_size
        graph, inputs = _RcnnGraph(members).eval(), ["crops"]
        args = (torch.zeros(2, 3, s, s),)
        axes = {"crops": {0: "crops"}, **{o: {0: "crops"} for o in outputs}}
    buf = io.BytesIO()
    try:
        import onnx  # noqa: F401  here: torch.onnx.export needs it (pip install -e '.[onnx]'), loaded when used
    except ImportError:
        raise UserError("export-model needs the onnx extra: pip install -e '.[onnx]'") from None
    with torch.no_grad():
        torch.onnx.export(graph, args, buf, dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes)
    side = {"format": FORMAT, "version": VERSION, "kind": kind, "classes": list(detector.classes), "members": n,
            "inputs": inputs, "outputs": outputs, "opset": OPSET, "min_input": getattr(members[0], "min_input", None),
            "config": to_dict(cfg)}
    return buf.getvalue(), side


class OnnxDetector(Detector):
    """A :class:`Detector` whose networks run in onnxruntime: proposals, the working copy,
    resizing or warping, the ensemble average and post-processing are the PyTorch path's."""

    def __init__(self, path: str, threads: int = 0):
        try:
            import onnxruntime as ort  # here: an optional dependency (pip install -e '.[onnx]'), loaded when used
        except ImportError:
            raise UserError(f"model {path}: running an ONNX model needs onnxruntime: pip install -e '.[onnx]'") from None

        side = read_sidecar(path)
        cfg = from_dict(DetectorConfig, side["config"], source=f"model {sidecar_path(path)}")
        # Detector's state without its PyTorch ensemble (score_regions below replaces it)
        self.cfg, self.classes, self.device, self.multibox = cfg, list(side["classes"]), torch.device("cpu"), None
        self.kind, self.ensemble, self.side = kind_of(cfg), None, side
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf / RuntimeException types
            raise UserError(f"model {path}: not a readable ONNX model ({str(e).splitlines()[0][:200]})") from None
        names = [i.name for i in self.session.get_inputs()]
        if names != side["inputs"] or [o.name for o in self.session.get_outputs()] != side["outputs"]:
            raise UserError(f"model {path}: its inputs/outputs {names} are not the ones its sidecar names")

    def _average(self, outs: list) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' mean softmax and mean deltas, as :class:`detector.ensemble.Ensemble`."""
        logits, deltas = outs[0::2], outs[1::2]
        return average((RegionOutputs(torch.from_numpy(lg), torch.from_numpy(d), []) for lg, d in zip(logits, deltas)),
                       len(logits))

    def score_regions(self, image: np.ndarray, boxes: torch.Tensor, times: dict | None = None):
        times = times if times is not None else {}
        n, c = len(boxes), len(self.classes)
        if n == 0:
            return torch.zeros((0, c + 1)), None
        t0 = time.perf_counter()
        img = to_tensor_image(image)
        if self.cfg.model.kind == "fast":
            f = self.cfg.model.fast
            if self.cfg.test.scales and len(self.cfg.test.scales) > 1:
                raise UserError("test.scales: an image pyramid is not run by the ONNX path yet (one scale is)")
            side = self.cfg.test.scales[0] if self.cfg.test.scales else f.min_side
            x, sx, sy = resize_image(img, resize_factor(img.shape[1], img.shape[2], side, f.max_side))
            x, (ux, uy) = upsample_to_min_input(x, int(self.side["min_input"] or 1))  # as FastRCNN.features
            b = boxes.float() * torch.tensor([sx * ux, sy * uy, sx * ux, sy * uy])
            feeds = [{"image": x[None].contiguous().numpy(), "boxes": b.contiguous().numpy()}]
        else:
            r = self.cfg.model.rcnn
            step = max(1, self.cfg.test.batch_size)
            feeds = [{"crops": warp_regions(img, boxes[s:s + step].float(), r.input_size, r.context_pad)
                      .contiguous().numpy()} for s in range(0, n, step)]
        times["warp" if self.cfg.model.kind == "rcnn" else "trunk"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        parts = [self._average(self.session.run(None, feed)) for feed in feeds]
        times["network" if self.cfg.model.kind == "rcnn" else "head"] = time.perf_counter() - t0
        return torch.cat([p for p, _ in parts]), torch.cat([d for _, d in parts])


def read_sidecar(path: str) -> dict:
    """The sidecar of ``path``, checked: one line naming what is wrong."""
    side_path = sidecar_path(path)
    if not os.path.isfile(path):
        raise UserError(f"model {path}: no such file")
    try:
        with open(side_path, encoding="utf-8") as f:
            side = json.load(f)
    except FileNotFoundError:
        raise UserError(f"model {path}: its sidecar {side_path} (classes and settings, written by export-model "
                        "beside it) is missing") from None
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(f"model {path}: sidecar {side_path} is not readable JSON ({str(e)[:200]})") from None
    if not isinstance(side, dict) or side.get("format") != FORMAT:
        raise UserError(f"model {path}: {side_path} is not an export-model sidecar")
    if side.get("version") != VERSION:
        raise UserError(f"model {path}: sidecar version {side.get('version')!r}; this version reads {VERSION}")
    want = {"kind": str, "classes": list, "members": int, "inputs": list, "outputs": list, "config": dict}
    bad = [k for k, t in want.items() if not isinstance(side.get(k), t)]
    if bad:
        raise UserError(f"model {path}: sidecar {side_path} lacks or mistypes {', '.join(bad)}")
    return side
