"""Development tools, not installed as part of ace-email: the embedded mail server
(`localmail`), the local stack `dev.py run` starts (`stack`, `processes`), its mail commands
(`dev.py send` and `dev.py mail`), the sample emails, and the Dovecot + Postfix stack the tests
run against (`companymail`)."""
