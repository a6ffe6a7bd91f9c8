"""model-summary: parameter counts and multiply-adds of each backbone network."""

from __future__ import annotations

import argparse

from backbone import NETWORKS, build_backbone, count_macs, count_parameters
from backbone.config import MAX_INPUT_SIZE, MAX_NUM_CLASSES
from backbone.errors import UserError
from backbone.io import json_text
from detector.cli.common import cli_main
from detector.io.outputs import Outputs, add_output_arg, add_overwrite_arg

AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="model-summary", description="Parameters and multiply-adds of each network.")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--size", type=int, default=224, help="input size for the multiply-add count (default 224)")
    add_output_arg(p, "--json", help="also write the numbers to this JSON file")
    add_overwrite_arg(p, "--json")
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.num_classes <= MAX_NUM_CLASSES:  # 10^8 asked for 400 GB
        raise UserError(f"--num-classes {args.num_classes}: must be in [1, {MAX_NUM_CLASSES}]")
    if args.size > MAX_INPUT_SIZE:
        raise UserError(f"--size {args.size}: at most {MAX_INPUT_SIZE} px")
    outputs = Outputs(overwrite=args.overwrite, prog="model-summary")
    json_path = outputs.check(args.json, "--json") if args.json else None
    rows = []
    for name in NETWORKS:
        m = build_backbone(name, num_classes=args.num_classes, aux_logits=True)
        rows.append({
            "network": name,
            "params": count_parameters(m, exclude_prefixes=AUX_PREFIXES),
            "params_with_aux": count_parameters(m),
            "macs": count_macs(m, args.size),
        })
    print(f"{'network':<14}{'params':>14}{'with aux':>14}{'MACs @' + str(args.size):>16}")
    for r in rows:
        print(f"{r['network']:<14}{r['params']:>14,}{r['params_with_aux']:>14,}{r['macs'] / 1e9:>14.3f} G")
    if json_path:
        outputs.write(json_path, json_text(rows, indent=2), what="--json")
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
