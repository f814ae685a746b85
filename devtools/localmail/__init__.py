"""An embedded mail server speaking real IMAP and SMTP on loopback, for the demo and the tests.

* IMAP is served by pymap with its on-disk maildir backend, so mail (and every mailbox's
  UIDVALIDITY) survives a restart on the same data directory. A few pymap internals are
  adjusted on first start (see `maildir.py`): BODY[] is served byte-exact, UIDs follow
  arrival order, and mailboxes that mail is moved out of do not slow down.
* SMTP is served by aiosmtpd on the same event loop (see `smtp.py`). Every recipient that
  matches a configured user gets the message written atomically into that user's INBOX
  maildir, with a Return-Path and a Received header prepended; with a catch-all mailbox, so
  does every other recipient, in that mailbox.

Run it on its own with `python -m devtools.localmail --data-dir DIR --imap-port 1143
--smtp-port 1025 --users-file users.txt`. Its passwords belong to this local server only; they
are hashed with a deliberately cheap work factor so that a fresh IMAP login stays fast.
"""

from devtools.localmail.maildir import DEFAULT_KEYWORDS
from devtools.localmail.server import LocalMailServer, MailServerThread
from devtools.localmail.smtp import MAX_MESSAGE_SIZE, TrackedSMTP
from devtools.localmail.users import MailUser, UnknownMailboxError

__all__ = [
    "DEFAULT_KEYWORDS",
    "MAX_MESSAGE_SIZE",
    "LocalMailServer",
    "MailServerThread",
    "MailUser",
    "TrackedSMTP",
    "UnknownMailboxError",
]
