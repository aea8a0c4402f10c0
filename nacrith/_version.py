"""The package version (its own module, so that modules below the package's API can name it)."""

__version__ = "0.1.0"
