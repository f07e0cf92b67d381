"""The errors the library raises: each message names the symbol, file or field and what to do."""


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TradingMLError(Exception):
    """Base class for every error this library raises on purpose."""


class ConfigError(TradingMLError):
    """A setting, option or argument is wrong."""


class UnknownModel(ConfigError):
    """A model name the catalogue does not have (one error and message wherever a name is given)."""


class DataError(TradingMLError):
    """Input data is missing or malformed; re-running will not help until the input changes."""


class OutsideCoverage(DataError):
    """The source has no bars that far back (or forward): the sample series, the synthetic epoch."""


class SourceUnavailable(TradingMLError):
    """A data source did not answer (rate limit, network); retrying later may help."""


class StageFailed(TradingMLError):
    """A stage finished its work but the result is not good enough to go on."""


class StoreError(TradingMLError):
    """The MongoDB or TinyDB store refused or could not be reached; retrying later may help."""


class ConflictError(TradingMLError):
    """A write would replace a document another run owns (a registry record or version claim);
    nothing was written. Retrying will not help; the message names both runs."""
