"""The work-item intake endpoint, as operators start it:
`python -m ace_email.intake_server --config ...` (its work: ace_email/services/intake.py)."""

from ace_email.exiting import run_then_exit
from ace_email.services.intake import main

if __name__ == "__main__":
    run_then_exit(main)
