"""The codec server for the Temporal Web UI, as operators start it:
`python -m ace_email.codec_server --config ...` (its work: ace_email/services/codec.py)."""

from ace_email.exiting import run_then_exit
from ace_email.services.codec import main

if __name__ == "__main__":
    run_then_exit(main)
