"""The shared training loop (loop.py), its LR schedule, checkpoints and DDP helpers,
and the GPT-2 command line (cli.py, used by gpt2/train.py)."""
