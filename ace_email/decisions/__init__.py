"""What ace-email decides from an email's analysis and the configuration's snapshots, as pure
functions: the account's rules (queue, priority, skills, reply template, quarantine), whether
an automatic reply goes out, and the router's choices (queue order, which agent may take what,
how a contact reaches its agent). Nothing here reads settings or renders templates."""
