"""``python -m bioplastic``: the same as the ``bioplastic`` command."""

from .cli import main

# guarded: the demo's worker processes (spawn) re-import this module without running it
if __name__ == "__main__":
    raise SystemExit(main())
