"""The package version, in one place (pyproject.toml reads the same number)."""
__version__ = "0.1.0"
ARCHIVER_VERSION = f"mar_tasks {__version__}"


def deflate_version() -> str:
    """The deflate implementation the archives are written with (python-isal and the ISA-L
    it carries): another version may write other bytes, so it is part of what a doit task's
    archive depends on. (Imports only isal's small package, never the writers.)"""
    import isal
    return f"python-isal {isal.__version__} ISA-L {getattr(isal, 'ISAL_VERSION', '?')}"
