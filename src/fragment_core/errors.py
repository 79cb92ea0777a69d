"""Error classes the runner acts on differently.

Every error carries a human message that names *what* and *where* (the source, the
record, the field or the config key) and never a secret.

========================  ===============================================  ==============
class                     meaning                                          runner action
========================  ===============================================  ==============
``ConfigurationError``    settings are wrong (file, key, option)           stop the source
``AuthenticationError``   credentials rejected or lacking a scope          stop the source
``TransientError``        a retry may succeed (5xx, timeout, dropped)      retry, then fail
``RateLimitedError``      the remote asked us to slow down                 wait, then retry
``IncompleteFetchError``  a listing ended before the total it announced    retry, then fail
``BadRecordError``        one record cannot be mapped                      skip it, go on
``PluginError``           a plugin is broken or conflicts with another     stop / warn
========================  ===============================================  ==============
"""

from __future__ import annotations


class FragmentError(Exception):
    """Base class of every error fragment-core raises on purpose.

    ``str(error)`` is ``"{where}: {message}"``, the record (and field) named before the
    message when known. ``where`` and ``record_id`` may be left out where the error is
    raised: the engine names the source and record of an error raised while mapping or
    writing back (:meth:`attribute`), the Transport its source.
    """

    record_id: str | None = None
    field: str | None = None

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(message)

    def __str__(self) -> str:
        named = [] if self.record_id is None else [f"record {self.record_id!r}"]
        if self.field is not None:
            named.append(f"field {self.field!r}")
        text = f"{', '.join(named)}: {self.message}" if named else self.message
        return f"{self.where}: {text}" if self.where else text

    def attribute(self, where: str, record_id: str | None = None) -> FragmentError:
        """Name the source (``where``) and the record, unless already named; returns self."""
        if self.where is None:
            self.where = where
        if self.record_id is None and record_id is not None:
            self.record_id = record_id
        return self


class ConfigurationError(FragmentError):
    """The configuration (file, source options, environment) is invalid."""


class AuthenticationError(FragmentError):
    """Credentials were rejected, expired, or lack a permission the connector needs."""


class TransientError(FragmentError):
    """A failure that may go away on its own: a 5xx, a timeout, a dropped connection."""


class RateLimitedError(TransientError):
    """The remote API asked us to slow down; ``retry_after`` is in seconds when known."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, where: str | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, where=where)


class BadRecordError(FragmentError):
    """One record cannot become a task. The run skips it and goes on.

    ``record_id`` and ``field`` say which record and which field, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        record_id: str | None = None,
        field: str | None = None,
        where: str | None = None,
    ) -> None:
        super().__init__(message, where=where)
        self.record_id = record_id
        self.field = field


class PluginError(FragmentError):
    """A plugin failed to load, or two plugins conflict."""


class WriteBackError(FragmentError):
    """A write-back (``on_complete``) failed in a way retrying will not fix."""


class IncompleteFetchError(TransientError):
    """A fetch ended before the total it announced: never the end of the listing.

    The run fails (and is retried later) so that nothing is closed for want of a record
    that was only missing from a cut-short listing. ``fetched`` and ``total`` say how many.
    """

    def __init__(
        self, what: str, *, fetched: int, total: int, where: str | None = None
    ) -> None:
        self.what = what
        self.fetched = fetched
        self.total = total
        super().__init__(
            f"{what or 'the fetch'} is incomplete: it ended after {fetched} of the {total} "
            "items it announced (the listing changed or was cut short); nothing is closed",
            where=where,
        )
