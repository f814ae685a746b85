"""The mail-server clients, Temporal-free: IMAP sessions and their pool, the message store
(finding a message by its claim check, moving it, the records of what left), intake (polling
an inbox, claiming a message), SMTP sending, OAuth2 tokens; with one error type that says what
went wrong and whether trying again can help. Activities, operators' commands and the HTTP
services all use these."""
