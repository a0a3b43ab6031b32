"""Only what pyproject.toml cannot say: install ``mar_tasks_doit_errors.pth`` beside the
package (see mar_tasks/cli/doit_startup_errors.py), in a wheel and in an editable install."""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "mar_tasks_doit_errors.pth"


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


cmdclass = {"build_py": build_py_with_pth}
try:  # pip install -e: setuptools >= 64 builds an editable wheel its own way
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:
    editable_wheel = None

if editable_wheel is not None:
    class editable_wheel_with_pth(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            strategy = super()._select_strategy(*args, **kwargs)

            class WithPth:
                def __enter__(self):
                    strategy.__enter__()
                    return self

                def __exit__(self, *exc):
                    return strategy.__exit__(*exc)

                def __call__(self, wheel, files, mapping):
                    strategy(wheel, files, mapping)
                    with open(PTH, "rb") as f:
                        wheel.writestr(PTH, f.read())

            return WithPth()

    cmdclass["editable_wheel"] = editable_wheel_with_pth

setup(cmdclass=cmdclass)
