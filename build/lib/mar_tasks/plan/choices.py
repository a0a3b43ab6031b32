"""The values an option may take (runtime, archive format, compression) and each format's
file suffix. Apart from :mod:`mar_tasks.plan.options` so that reading a pyproject's tables
does not build the options class: a no-op doit run never needs it.
"""
RUNTIMES = ("python", "python2", "python3", "LSP")
FORMATS = ("default", "tgz", "no-archive", "zip-store")
COMPRESSIONS = ("auto", "deflate", "store")
SUFFIXES = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}
