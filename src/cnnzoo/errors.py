"""The one exception type for problems a user can cause and fix."""


class CnnzooError(Exception):
    """A user-facing error: one clear sentence saying what was wrong and what to do.

    The command line prints it as a single line and exits with status 2; bugs still raise
    their own exception types with a traceback.
    """
