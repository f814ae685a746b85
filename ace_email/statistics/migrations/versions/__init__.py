"""The statistics database's migrations, oldest first."""
