"""`python -m netspec.sweep.trial FOLDER [--resume]`: one sweep trial in a fresh interpreter
(where fork is not available)."""
import sys

from .executors import _trial_main

if __name__ == "__main__":
    sys.exit(_trial_main(sys.argv[1:]))
