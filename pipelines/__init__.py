"""The jobs behind each ``rollrisk`` subcommand: argument parsing and printing around the library (a job never imports another job)."""
