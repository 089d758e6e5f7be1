"""The errors every layer may raise; the application layer prints them as one line, exit code 2."""


class ConfigError(ValueError):
    """An impossible or unknown setting, or unusable input (a file, a run directory)."""


class UnknownSettingsError(ConfigError):
    """Settings this version does not have (a config, or a run directory another version wrote)."""


class EnvError(ConfigError):
    """An unknown, unavailable or unsupported environment."""
