"""User-facing errors: the CLI prints them as one line, without a traceback."""

import importlib.util


class RnnedgeError(Exception):
    """A problem the user can fix (bad input, missing file, wrong option); exit status 2."""

    exit_code = 2


class BundleError(RnnedgeError):
    """A bundle that cannot be used: missing or corrupted file, unknown schema."""


class InputError(RnnedgeError):
    """Input data that cannot be used: missing column, non-numeric value, too few rows."""


class ParityError(RnnedgeError):
    """An exported model that does not reproduce the recorded reference outputs; exit status 1."""

    exit_code = 1


def require_extra(command: str, extra: str, modules: tuple[str, ...]) -> None:
    """Fail in one line when a command needs packages the base (device) install leaves out."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise RnnedgeError(
            f"'rnnedge {command}' needs the {extra!r} extra ({', '.join(missing)} not installed): "
            f"pip install 'rnnedge[{extra}]'"
        )
