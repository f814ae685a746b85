"""What an email is: pure functions over its raw bytes (the `mime` package) and the language
of its text. Nothing here does I/O, reads settings or knows Temporal."""
