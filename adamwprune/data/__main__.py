"""``python -m adamwprune.data prepare|info|list``: prepare and inspect datasets."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from adamwprune.data import DATASETS, default_data_dir, get_dataset, images
from adamwprune.errors import UserError, run_main

PROG = "python -m adamwprune.data"
NAMES = (*DATASETS, *images.SOURCES)  # token datasets (GPT-2), then image datasets (the classifiers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="download and tokenize (or download and verify) a dataset into "
                                          "DATA_DIR/NAME/")
    prep.add_argument("name", help=f"one of: {', '.join(NAMES)}")
    prep.add_argument("--data-dir", default=None, help="default: $ADAMWPRUNE_DATA_DIR or ./data")
    prep.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds (default 10)")
    prep.add_argument("--max-tokens", type=int, help="finewebedu: stop after about this many tokens")
    prep.add_argument("--max-docs", type=int, help="finewebedu: stop after this many documents")
    prep.add_argument("--shard-tokens", type=int, help="finewebedu: tokens per shard file (default 100M)")
    prep.add_argument("--from-file", help="shakespeare: a local copy of input.txt (no download)")
    prep.add_argument("--url", help="shakespeare: download from this URL instead")
    info = sub.add_parser("info", help="check a prepared dataset and print its token counts")
    info.add_argument("name")
    info.add_argument("--data-dir", default=None)
    sub.add_parser("list", help="list the datasets")
    return parser


def _check_options(args: argparse.Namespace) -> None:
    allowed = {"finewebedu": {"max_tokens", "max_docs", "shard_tokens"},
               "shakespeare": {"from_file", "url"}}.get(args.name, set())
    for option in ("max_tokens", "max_docs", "shard_tokens", "from_file", "url"):
        value = getattr(args, option)
        if value is not None and option not in allowed:
            raise UserError(f"--{option.replace('_', '-')} does not apply to {args.name}")
        if isinstance(value, int) and value < 1:
            raise UserError(f"--{option.replace('_', '-')} must be positive, got {value}")
    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for info in DATASETS.values():
            print(f"{info.name:12s} {info.description}")
        for source in images.SOURCES.values():
            print(f"{source.name:12s} {source.description}")
        return 0
    if args.name not in NAMES:
        raise UserError(f"unknown dataset {args.name!r}; choose one of: {', '.join(NAMES)}")
    data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
    if args.command == "prepare":
        _check_options(args)
    if args.name in images.SOURCES:
        return _image_dataset(args, data_dir)
    if args.command == "prepare":
        if args.name == "pydocs":
            print("pydocs needs no preparation: it is built in memory from Python's docs")
        elif args.name == "finewebedu":
            from adamwprune.data import finewebedu

            kwargs = {"shard_tokens": args.shard_tokens} if args.shard_tokens else {}
            finewebedu.prepare(data_dir, max_tokens=args.max_tokens, max_docs=args.max_docs,
                               timeout_s=args.timeout, **kwargs)
        else:
            from adamwprune.data import shakespeare

            shakespeare.prepare(data_dir, from_file=args.from_file, url=args.url, timeout_s=args.timeout)
    ds = get_dataset(args.name, data_dir)  # reads back what was written: validates every shard
    print(f"{ds.name}: train {ds.num_tokens('train'):,} tokens, val {ds.num_tokens('val'):,} tokens, "
          f"encoding {ds.encoding}, vocab_size {ds.vocab_size}"
          + ("" if args.name == "pydocs" else f", in {data_dir}/{args.name}"))
    return 0


def _image_dataset(args: argparse.Namespace, data_dir) -> int:
    """prepare: download what is missing; prepare and info: verify, read and count."""
    source = images.SOURCES[args.name]
    if args.command == "prepare" and not source.files:
        print(f"{source.name} needs no download: {source.description}")
    ds = (source.open(data_dir, timeout_s=args.timeout) if args.command == "prepare"
          else source.open(data_dir, download=False))
    print(f"{ds.name}: train {len(ds.train_labels):,} images, test {len(ds.test_labels):,} images, "
          f"{'x'.join(map(str, ds.shape))}, {ds.num_classes} classes"
          + (f", in {data_dir}/{ds.name}" if source.files else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
