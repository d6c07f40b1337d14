"""Typed errors: the only exceptions the core lets out; the CLI turns each into one line and an exit code."""

from auditor.exitcodes import ExitCode


class AuditorError(Exception):
    """A problem the user can act on. `str(err)` is the one line shown to them."""

    exit_code = ExitCode.USAGE


class InputError(AuditorError):
    """Bad input: an argument, a duration, a budget, a config file."""


class DurationError(InputError):
    """A duration LiteLLM's parser rejects."""


class ConfigError(InputError):
    """A LiteLLM config file that cannot be read or does not parse."""


class UnavailableError(AuditorError):
    """Something `auditor` needs is not there: a database, Redis, LiteLLM's tables."""

    exit_code = ExitCode.UNAVAILABLE
