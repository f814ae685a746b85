"""The messages ace-email sends, built as bytes: automatic replies rendered from templates in
the customer's language, deliveries resent to agents, replies from the built-in interface and
the documents of work items. Building only: sending is the mail package's."""
