"""User-facing errors: one line that names the problem and the fix. The CLI prints them without a
traceback and exits with status 2."""


class ParityError(ValueError):
    """Bad input from a user (file, flag, configuration, checkpoint)."""


class RunFileError(ParityError):
    """One run's own files cannot be used (a checkpoint of another architecture, a corrupt one): that run
    fails with this message, and a matrix goes on with its other runs."""


def did_you_mean(name, choices, closest: bool = False) -> str:
    """' (did you mean ...?)' for near misses; with ``closest``, a name far from every choice still gets
    the three nearest (long lists such as the registry are hard to scan for the right id)."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.5)
    if close:
        return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    if closest:
        nearest = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.0)
        return f" (closest names: {', '.join(repr(c) for c in nearest)})" if nearest else ""
    return ""


def first_line(error: BaseException) -> str:
    """An exception's first line, or its type's name when it has no message (for one-line errors)."""
    text = str(error)
    return text.splitlines()[0] if text.strip() else type(error).__name__

