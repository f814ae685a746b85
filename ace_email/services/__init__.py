"""ace-email's HTTP services: the work-item intake endpoint and the codec server that lets
the Temporal Web UI show decrypted payloads, on one small JSON base."""
