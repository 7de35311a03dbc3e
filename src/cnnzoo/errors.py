"""The one exception type for problems a user can cause and fix."""


class CnnzooError(Exception):
    """A user-facing error: one clear sentence saying what was wrong and what to do.

    The command line prints it as a single line and exits with status 2; bugs still raise
    their own exception types with a traceback.
    """

    def _render_traceback_(self) -> list[str]:
        # IPython asks this of an exception before printing it: in a notebook a user's mistake reads
        # as its one sentence, as on the command line, not as a screen of cnnzoo's internals.
        return [f"{type(self).__name__}: {self}"]
