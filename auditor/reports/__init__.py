"""Output: terminal/JSON/CSV/Markdown rendering, the cron report, its money section and run history."""
