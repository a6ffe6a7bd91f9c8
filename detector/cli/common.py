"""What every console script shares: one-line errors, devices, common flags (config, --threads,
the proposal flags of propose and eval-proposals), the --json writer.

Only modules in ``detector/cli`` read argv. Each script's ``main(argv=None)`` is wrapped with
:func:`cli_main`, which turns a :class:`UserError` (or a missing file) into one line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import functools
import io
import json
import os
import sys
import time
import warnings
from typing import Callable

import numpy as np
import torch

from backbone.config import apply_overrides
from backbone.errors import InputWarning, UserError
from backbone.io import CACHE_ENV, check_writable, read_yaml
from backbone.weights import published_weights
from detector.classification.init import IMAGENET, SCRATCH
from detector.config import load_detector_config
from detector.engine.devices import resolve_device  # noqa: F401  (re-exported for the CLIs)
from detector.io.datasets import resolve_data
from detector.io.image_stream import READ_WORKERS, read_images
from detector.io.images import ImageReads, load_image
from detector.model import DETECT_BATCH, Detector, working_copy
from detector.proposal_cache import ensure_proposals
from proposals import METHODS, PRESETS
from proposals.config import ProposalConfig

try:  # eval/ has its own error type (it imports nothing of ours)
    from eval.errors import EvalError as _EvalError
except ImportError:  # pragma: no cover - before eval/ defines it
    class _EvalError(Exception):
        pass

USER_ERRORS = (UserError, _EvalError)


def cli_main(fn: Callable[..., int | None]) -> Callable[..., int]:
    """Decorate a ``main(argv=None)``: user errors -> ``error: ...`` on stderr, exit 2."""

    @functools.wraps(fn)
    def wrapper(argv=None) -> int:
        prog = fn.__module__.rsplit(".", 1)[-1].replace("_", "-")

        def one_line(message, category, filename, lineno, file=None, line=None):
            # a warning is one line naming the command, as errors are (not Python's two-line
            # "file:line: Category: ..." followed by a source line)
            print(f"{prog}: warning: {str(message).splitlines()[0] if str(message) else category.__name__}",
                  file=sys.stderr)

        cache_env = os.environ.get(CACHE_ENV)   # --cache-dir sets it for this command only
        try:
            with warnings.catch_warnings():
                warnings.showwarning = one_line
                rc = fn(argv)
            _flush_stdout()  # here, not at exit: a full disk is our one line, not Python's "Exception ignored"
        except USER_ERRORS as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2
        except InputWarning as e:  # --strict: the warning a peer-readable defect gets is the error
            print(f"{prog}: error: {str(e).splitlines()[0]}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # the reader of stdout left (`prog ... | head`): stop quietly, as cat and grep do;
            # stdout goes to /dev/null so Python's exit flush does not raise again (the recipe
            # of the Python docs, "Note on SIGPIPE")
            _silence_stdout()
            return 141
        except OSError as e:
            if e.errno not in _FULL:
                raise
            # stdout (or a file written without backbone.io) on a full disk or over `ulimit -f`;
            # the files written through backbone.io.atomic_write are UserErrors naming the path
            _silence_stdout()
            try:
                print(f"{prog}: error: {e.filename or 'standard output'}: cannot write ({e.strerror})", file=sys.stderr)
            except OSError:
                pass  # stderr is full too: the exit code says it
            return 2
        finally:
            if cache_env is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = cache_env
        return int(rc or 0)

    def entry(argv=None) -> int:
        rc = wrapper(argv)
        if argv is None:
            sys.exit(rc)
        return rc

    entry.__wrapped__ = fn  # type: ignore[attr-defined]
    return entry


#: errno of a write that found no room: a full disk (ENOSPC), a file-size limit (EFBIG), a quota (EDQUOT)
_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _flush_stdout() -> None:
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except ValueError:  # closed by the command itself
        pass


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # stdout is not a file (tests, embedding): nothing is flushed to a closed pipe


def announce_layout(cfg, prog: str) -> None:
    """Resolve ``data.format: auto`` of ``cfg`` in place (the layout found in ``data.root``) and
    name it in one line on stderr (rank 0 only under torchrun), before any work."""
    cfg.data, layout = resolve_data(cfg.data)
    if layout is not None and os.environ.get("RANK", "0") == "0":
        print(f"{prog}: {layout.line()}", file=sys.stderr)


class _StrictAction(argparse.Action):
    """``--strict``: from here on every :class:`InputWarning` is an error (Python's warning
    filter, inside :func:`cli_main`'s ``catch_warnings``, so it ends with the command)."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=False, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.simplefilter("error", InputWarning)
        setattr(namespace, self.dest, True)


def add_strict_arg(p: argparse.ArgumentParser, what: str = "input") -> None:
    """``--strict``: the one counted warning a peer-readable defect gets (inverted boxes, a
    truncated image, a duplicate split line, a size that disagrees with the image, ...) becomes the error."""
    p.add_argument("--strict", action=_StrictAction,
                   help=f"refuse {what} that the reference tools read with a warning (inverted boxes, truncated "
                        "images, duplicate lines or ids, annotated sizes that disagree with the image, ...): one error line, exit 2")


class _CacheDirAction(argparse.Action):
    """``--cache-dir D``: the cache folder of everything this command caches (proposals, the
    annotation index, fallback split files): ``$GOOGLENET_DET_CACHE`` set to ``D`` (what
    :func:`backbone.io.cache_dir` reads; :func:`cli_main` restores it when the command ends).
    Refused when it cannot be written (a read-only folder, a file in the way) while the
    arguments are read: before the config, the data summary and any work."""

    def __call__(self, parser, namespace, values, option_string=None):
        check_writable(values, what=option_string or "--cache-dir", folder=True)
        path = os.path.abspath(os.path.expanduser(values))
        os.environ[CACHE_ENV] = path
        setattr(namespace, self.dest, path)


def _count(least: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
        if v < least:
            raise argparse.ArgumentTypeError(f"{v}: must be at least {least}")
        return v
    return parse


def add_batch_args(p: argparse.ArgumentParser) -> None:
    """``--batch`` and ``--read-workers`` (detect, eval-map --split): images per trunk call
    (:meth:`detector.model.Detector.detect_batch`) and decoding processes
    (:func:`detector.io.image_stream.read_images`); the defaults are the faster on the CPU
    (neither: issue 23's measurement, bench/bench_detect.py)."""
    p.add_argument("--batch", type=_count(1), default=DETECT_BATCH, metavar="N",
                   help=f"images per trunk call, same-size images together (the fast kind; R-CNN and test "
                        f"pyramids run one image at a time; the detections are the same either way; default "
                        f"{DETECT_BATCH}: image by image, the faster on a CPU; more may help on a GPU)")
    p.add_argument("--read-workers", type=_count(0), default=READ_WORKERS, metavar="N",
                   help=f"processes decoding the next images while the current ones are detected (0: decode in "
                        f"the loop; default {READ_WORKERS}, the faster on a CPU, where decoding is under 1%% of "
                        f"the work)")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N (default: auto)")


#: the config ``--data`` applies when no --config is given (packaged; configs/default.yaml links to it)
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "default.yaml")
#: ... and the one train-detector applies instead when it starts from ImageNet weights
DEFAULT_IMAGENET_CONFIG = os.path.join(os.path.dirname(DEFAULT_CONFIG), "default_imagenet.yaml")


def add_init_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--init``: where the network(s) start (train-detector, train-classifier)."""
    p.add_argument("--init", metavar="imagenet|none|FILE",
                   help=f"start {what} from: imagenet (the arch's published torchvision ImageNet weights, from the "
                        "torch hub cache or downloaded; googlenet_bn and inception_v3 have them), none (from "
                        "scratch), or a FILE: a train-classifier checkpoint or a torchvision state dict "
                        "(= --set model.init=...; a file named imagenet: ./imagenet)")


def init_override(init: str) -> str:
    """``--init`` as the ``model.init`` override (a file made absolute, the two words kept)."""
    return f"model.init={init if init in (IMAGENET, SCRATCH) else os.path.abspath(init)}"


def data_default_config(init: str | None) -> tuple[str, str]:
    """The packaged config train-detector --data applies without --config, and the one line
    that says so: ImageNet weights when asked (--init imagenet) or, unless --init none, when
    they are in the torch hub cache; from scratch otherwise, saying how to get them."""
    arch = read_yaml(DEFAULT_IMAGENET_CONFIG, "config")["model"]["arch"]
    pw = published_weights(arch)
    if init == IMAGENET or (init is None and pw.cached):
        how = "found in the torch hub cache" if pw.cached else "to be downloaded"
        return DEFAULT_IMAGENET_CONFIG, (f"starting from ImageNet weights ({pw.name}, {pw.file_name} {how}): "
                                         f"config {DEFAULT_IMAGENET_CONFIG} (--init none: from scratch)")
    if init == SCRATCH:
        return DEFAULT_CONFIG, f"training from scratch (--init none): config {DEFAULT_CONFIG}"
    return DEFAULT_CONFIG, (f"training from scratch: no ImageNet weights in the torch hub cache ({pw.path}); to "
                            f"start from them, {pw.how_to_get()} or run with --init imagenet on a machine online")


def add_config_args(p: argparse.ArgumentParser, required: bool = True, data: bool = False) -> None:
    """--config, --data-root, --set, --cache-dir: shared by every CLI that reads a config
    (``data=True``: also --data DIR, which makes --config optional; see :func:`config_source`)."""
    p.add_argument("--config", required=required and not data,
                   help="YAML config (see configs/)" + (f"; default with --data: {DEFAULT_CONFIG}" if data else ""))
    p.add_argument("--data-root", help="dataset root folder, overriding data.root in the config")
    if data:
        p.add_argument("--data", metavar="DIR", help="your dataset: a folder in any layout data.format auto "
                       "recognises (VOC, loose VOC XML, YOLO, COCO), or a YOLO data.yaml; = --data-root DIR "
                       "--set data.format=auto, and configs/default.yaml when --config is not given")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config setting, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--cache-dir", action=_CacheDirAction,
                   help="cache folder for proposals and the annotation index (default: $GOOGLENET_DET_CACHE, "
                        "else ~/.cache/googlenet-det)")


def config_source(args, p: argparse.ArgumentParser) -> tuple[str | None, list[str], str | None]:
    """(config path, overrides, data root) from --config / --data / --data-root / --set."""
    overrides = list(args.overrides)
    data = getattr(args, "data", None)
    if data is None:
        if args.config is None:
            p.error("give --config FILE or --data DIR")
        return args.config, overrides, args.data_root
    if args.data_root is not None:
        p.error("give --data or --data-root, not both")
    config = args.config
    if config is None:
        config = DEFAULT_CONFIG
        if "init" in vars(args):  # train-detector: ImageNet weights when there (see data_default_config)
            config, line = data_default_config(args.init)
            if os.environ.get("RANK", "0") == "0":
                print(f"{p.prog}: {line}", file=sys.stderr)
    return config, ["data.format=auto", *overrides], os.path.abspath(data)


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads (classify, eval-classifier, train-classifier); see :func:`set_threads`."""
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: torch's choice; 1 is fastest on a shared, busy CPU)")


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (None: torch's choice); below 1 is the one-line error."""
    if threads is None:
        return
    if threads < 1:
        raise UserError(f"--threads {threads}: must be >= 1")
    torch.set_num_threads(threads)


def write_json_output(outputs, path: str, doc) -> None:
    """``doc`` as JSON (indent 1) to the ``--json`` path checked by ``outputs`` (:mod:`detector.io.outputs`)."""
    outputs.write(path, json.dumps(doc, indent=1) + "\n", what="--json")


def add_proposal_args(p: argparse.ArgumentParser) -> None:
    """The proposal flags of propose and eval-proposals (read by :func:`proposal_config`)."""
    p.add_argument("--method", choices=METHODS, help="proposal method (default: ss for images, the config's for --config)")
    p.add_argument("--preset", choices=list(PRESETS), help="selective search preset (default: fast)")
    p.add_argument("--superpixel-scale", type=float, help="multiplies Felzenszwalb k and min size (paper: 2)")
    p.add_argument("--backend", choices=["ours", "selectivesearch"], help="selective search engine")
    p.add_argument("--working-width", type=int, help="images resized to this width first (0: no resize)")
    p.add_argument("--multibox", metavar="CKPT", help="MultiBox checkpoint (written by train-detector --stage multibox)")
    p.add_argument("--max-total", type=int, metavar="N",
                   help="keep at most N proposals per image, after merging (proposals.max_total; default: no cap)")


#: the proposal flags (dest names) :func:`proposal_config` reads; refused with ``--model``
PROPOSAL_FLAGS = ("method", "preset", "superpixel_scale", "backend", "working_width", "multibox", "max_total")


def add_proposal_model_arg(p: argparse.ArgumentParser) -> None:
    """``--model CKPT`` of propose and eval-proposals: the proposals a detector scores."""
    p.add_argument("--model", metavar="CKPT",
                   help="detector checkpoint: the boxes it scores in detect (its own when its model proposes, "
                        "e.g. proposals.method trunk, else its checkpoint's proposals section: selective "
                        "search / MultiBox, from the cache with --split), in each image's pixels, before "
                        "test.max_proposals. The proposals are the model's: --method, --preset, "
                        "--superpixel-scale, --backend, --working-width, --max-total, --multibox and --set "
                        "proposals.KEY are refused with it, and --config gives only the data")


def check_proposal_model_args(args) -> None:
    """``--model`` is one source of proposals: no proposal flag beside it (one line naming them)."""
    if args.model is None:
        return
    if not args.model.strip():
        raise UserError(f"--model {args.model!r}: an empty path (give a detector checkpoint)")
    given = ["--" + f.replace("_", "-") for f in PROPOSAL_FLAGS if getattr(args, f, None) is not None]
    given += [f"--set {o}" for o in args.overrides if o.strip().startswith("proposals.")
              or (not args.config and "=" in o)]
    if given:
        raise UserError(f"--model {args.model} proposes with its own settings; {', '.join(given)} would change "
                        f"them: leave {'it' if len(given) == 1 else 'them'} out, or leave --model out to choose "
                        f"the proposals here")


def model_proposals(detector, dataset, *, cache_dir=None, workers: int = 2, sync=None, reads=None):
    """``detector``'s proposals of every record of ``dataset`` and the seconds each took:
    (boxes per record, seconds per record, ``own``). ``own``: its model proposes (probed on the
    first image that decodes), and every image is proposed here (decoded ahead,
    :func:`detector.io.image_stream.read_images`); else its configured proposals through the
    cache (:func:`detector.proposal_cache.ensure_proposals`, computed when missing), which are
    the boxes ``eval-map --split`` scores. An image that cannot be decoded has no boxes (one
    counted warning, as ``reads`` tells)."""
    reads = reads or ImageReads(f"dataset {dataset.root}", "given no proposals")
    first = None
    for rec in dataset.records:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the probe tells nothing: the pass below does
            try:
                first = load_image(rec.path)
                break
            except UserError:
                continue
    own = first is not None and detector.kind.propose(detector.ensemble, detector.cfg, working_copy(first)[0],
                                                      detector.device) is not None
    if not own:
        boxes, secs = ensure_proposals(dataset, detector.cfg.proposals, cache_dir=cache_dir, workers=workers,
                                       device=str(detector.device), multibox=detector.multibox, with_seconds=True,
                                       sync=sync, reads=reads)
        return boxes, secs, False
    boxes, secs = [], []
    for r in read_images([rec.path for rec in dataset.records], workers=READ_WORKERS, reads=reads):
        t0 = time.perf_counter()
        boxes.append(detector.image_proposals(r.image) if r.image is not None else np.zeros((0, 4), np.float32))
        secs.append(time.perf_counter() - t0)
    reads.report()
    return boxes, secs, True


def proposal_config(args):
    """(DetectorConfig or None, ProposalConfig) from --config/--set and the proposal flags."""
    full = None
    if args.config:
        full = load_detector_config(args.config, args.overrides, data_root=args.data_root)
        cfg = full.proposals
    else:
        if args.overrides:
            cfg = apply_overrides(ProposalConfig(method="ss"), [o.removeprefix("proposals.") for o in args.overrides])
        else:
            cfg = ProposalConfig(method="ss")
    for flag, field in (("method", "method"), ("preset", "preset"), ("superpixel_scale", "superpixel_scale"),
                        ("backend", "backend"), ("working_width", "working_width"), ("multibox", "multibox_checkpoint"),
                        ("max_total", "max_total")):
        v = getattr(args, flag)
        if v is not None:
            setattr(cfg, field, v)
    return full, cfg
