"""Writing counters back: the backfill plan and its application, the live protocol, auditor's own tables."""
