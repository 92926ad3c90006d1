"""Build of the native core.

Conventions (so that adding a native piece never needs an edit here):
- `_native/cython/<name>.pyx` becomes the extension `agent.native._<name>`, linked with the C
  sources in `_native/<name>/` (if that folder exists) and `_native/common/`.
- `_native/supervisor/*.c` plus `_native/common/*.c` become the executable
  `agent/native/bin/taskagent-supervisor`.
- Our own C is compiled with -Wall -Wextra -Werror; Cython's generated C with the defaults.
- TASKAGENT_BUILD_ONLY=name[,name...] builds only those pieces ("supervisor" included), which
  keeps development builds short.
"""

import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
STRICT = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-fPIC"]
INCLUDE = ["_native/include"]
SUPERVISOR_NAME = "taskagent-supervisor"


def _only():
    raw = os.environ.get("TASKAGENT_BUILD_ONLY", "").strip()
    return {p.strip() for p in raw.split(",") if p.strip()} or None


def _c_sources(folder):
    return sorted(glob.glob(os.path.join("_native", folder, "*.c")))


# Extension name -> our C sources for it (cythonize makes new Extension objects, so this
# cannot ride on the extension itself).
STRICT_SOURCES: dict[str, list[str]] = {}


def _extensions():
    only = _only()
    exts = []
    for pyx in sorted(glob.glob("_native/cython/*.pyx")):
        name = os.path.splitext(os.path.basename(pyx))[0]
        if only is not None and name not in only:
            continue
        ext = Extension(
            f"agent.native._{name}",
            sources=[pyx],
            include_dirs=INCLUDE + [f"_native/{name}"],
        )
        # Our C sources are compiled separately with strict flags and linked in.
        STRICT_SOURCES[ext.name] = _c_sources(name) + _c_sources("common")
        exts.append(ext)
    return cythonize(exts, language_level=3, compiler_directives={"boundscheck": False})


class BuildNative(build_ext):
    """build_ext that compiles our C strictly and also links the supervisor executable."""

    def build_extension(self, ext):
        strict = STRICT_SOURCES.get(ext.name, [])
        if strict:
            objects = self.compiler.compile(
                strict,
                output_dir=os.path.join(self.build_temp, "strict"),
                include_dirs=INCLUDE + ext.include_dirs,
                extra_postargs=STRICT,
            )
            ext.extra_objects = list(ext.extra_objects or []) + objects
        super().build_extension(ext)

    def run(self):
        super().run()
        only = _only()
        if only is None or "supervisor" in only:
            self._build_supervisor()
        if only is None or "cffi" in only:
            self._build_cffi()

    def _build_cffi(self):
        """cffi's out-of-line ABI modules: the declarations parsed now, not at each start."""
        import runpy

        builder = runpy.run_path(os.path.join(HERE, "_native", "cffi", "inotify_decl.py"))["ffibuilder"]
        base = HERE if self.inplace else self.build_lib
        out = os.path.join(base, "agent", "native", "_inotify_cffi.py")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        builder.emit_python_code(out)

    def _build_supervisor(self):
        sources = _c_sources("supervisor") + _c_sources("common")
        if not sources:
            return
        if self.compiler is None:  # no extension was built, so build_ext made no compiler
            from setuptools._distutils.ccompiler import new_compiler
            from setuptools._distutils.sysconfig import customize_compiler

            self.compiler = new_compiler()
            customize_compiler(self.compiler)
        objects = self.compiler.compile(
            sources,
            output_dir=os.path.join(self.build_temp, "supervisor"),
            include_dirs=INCLUDE + ["_native/supervisor"],
            extra_postargs=STRICT,
        )
        if self.inplace:
            out_dir = os.path.join(HERE, "agent", "native", "bin")
        else:
            out_dir = os.path.join(self.build_lib, "agent", "native", "bin")
        os.makedirs(out_dir, exist_ok=True)
        self.compiler.link_executable(objects, SUPERVISOR_NAME, output_dir=out_dir,
                                      target_lang="c")


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildNative})
