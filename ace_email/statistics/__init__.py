"""The statistics store: every contact's events in an SQL database, and the figures read back."""
