"""What operators, agents and supervisors do over a Temporal client: the account registry,
contacts (list, status, assign, poll), mailboxes' health, queues and agents, the built-in
interface (inbox, show, reply), work items, quarantine, an email's preview; each with its
formatting for people beside it. `starter.py` parses arguments and calls these."""
