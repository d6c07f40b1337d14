"""Deciding what is wrong: window replay, reconciliation into findings, the scan that sequences them, explain, doctor."""
