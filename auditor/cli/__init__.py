"""The command line: argument parsing, one call into the library, rendering. Nothing else imports it."""
