"""The configuration: a TOML file and ACE_EMAIL_* environment overrides, validated when it
loads (every file it names read then), split by what it configures: mail servers and their
logins, accounts, queues and agents, Temporal and its payload keys, OAuth2; with one way to
read a secret. It makes the snapshots (policies) workflows act on; nothing here does I/O
beyond reading its own files and variables."""
