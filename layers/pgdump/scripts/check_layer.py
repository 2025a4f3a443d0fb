#!/usr/bin/env python3
"""Check that a pg_dump layer directory (bin/, lib/) will load on AWS Lambda.

Lambda's python3.12 / python3.13 runtimes run on Amazon Linux 2023, whose glibc is 2.34, and
mount the layer at /opt. For every ELF file under the layer this fails when:

* it needs a GLIBC symbol version newer than --max-glibc (2.34), or GLIBC_PRIVATE;
* a NEEDED library is neither in the layer's lib/ nor one of glibc's core libraries
  (the only libraries we may take from the Lambda host; see GLIBC_CORE);
* it needs a symbol version (OPENSSL_3.0.0, krb5_3_MIT, …) that the bundled library does not
  define;
* it loads bundled libraries but its search path is not a DT_RPATH made of $ORIGIN-relative
  entries that reach lib/. DT_RPATH, not DT_RUNPATH: Lambda sets
  LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:…:/opt/lib, which the loader searches
  *before* DT_RUNPATH, so with RUNPATH a host copy of libcrypto.so.3 or libz.so.1 in /lib64
  would win over ours; DT_RPATH is searched before LD_LIBRARY_PATH.

Then it asks the host's dynamic loader (LD_TRACE_LOADED_OBJECTS, what ldd does) to resolve each
executable in bin/ with a Lambda-like LD_LIBRARY_PATH that puts the host's library directories
first, and fails if any non-glibc library would come from outside the layer.

Finally it prints the layer's size, unpacked and zipped. Exit status 1 on any failure.
Standard library plus binutils' objdump only.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# glibc's own libraries, present on every glibc system including Amazon Linux 2023 (glibc
# 2.34, package "glibc"). libpthread/libdl/librt are stubs since 2.34 but still exist, and
# libresolv.so.2 is still a separate library there. Everything else (libkeyutils, libcom_err,
# libz, libcrypto, …) comes from other packages that a Lambda image may lack or hold in another
# version, so it must be bundled.
GLIBC_CORE = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libresolv.so.2",
        "ld-linux-x86-64.so.2",
    }
)

# Host directories the Lambda-like LD_LIBRARY_PATH puts first (Debian's and Fedora-style paths).
HOST_LIB_DIRS = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"]


@dataclass
class ElfInfo:
    path: Path
    file_format: str = ""
    soname: str | None = None
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    # library soname -> versions this file requires from it
    version_refs: dict[str, set[str]] = field(default_factory=dict)
    # versions this file defines (for a shared library)
    version_defs: set[str] = field(default_factory=set)


def is_elf(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def read_elf(path: Path) -> ElfInfo:  # noqa: C901
    """Parse `objdump -p`: file format, dynamic section, version references and definitions."""
    out = subprocess.run(
        ["objdump", "-p", str(path)], capture_output=True, text=True, check=True
    ).stdout
    info = ElfInfo(path)
    m = re.search(r"file format (\S+)", out)
    info.file_format = m.group(1) if m else "?"
    section = None
    current_lib = None
    for line in out.splitlines():
        if line.startswith("Dynamic Section:"):
            section = "dynamic"
            continue
        if line.startswith("Version References:"):
            section = "refs"
            continue
        if line.startswith("Version definitions:"):
            section = "defs"
            continue
        if not line.strip():
            continue
        if section == "dynamic":
            parts = line.split()
            if len(parts) < 2:
                continue
            tag, value = parts[0], parts[1]
            if tag == "NEEDED":
                info.needed.append(value)
            elif tag == "SONAME":
                info.soname = value
            elif tag == "RPATH":
                info.rpath = value.split(":")
            elif tag == "RUNPATH":
                info.runpath = value.split(":")
        elif section == "refs":
            m = re.match(r"\s+required from (\S+):", line)
            if m:
                current_lib = m.group(1)
                info.version_refs.setdefault(current_lib, set())
            elif current_lib and line.startswith(" "):
                info.version_refs[current_lib].add(line.split()[-1])
        elif section == "defs":
            # "1 0x01 0x0b2ab5b3 libssl.so.3" (index 1 is the file itself), then "2 0x00 … V".
            parts = line.split()
            if len(parts) >= 4 and parts[0].isdigit() and parts[1] != "0x01":
                info.version_defs.add(parts[3])
    return info


def glibc_version(tag: str) -> tuple[int, ...] | None:
    m = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)*)", tag)
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def check_static(root: Path, max_glibc: tuple[int, ...]) -> tuple[list[str], list[ElfInfo]]:  # noqa: C901
    """Problems found by reading the ELF files, and the files read."""
    problems: list[str] = []
    lib_dir = (root / "lib").resolve()
    elves = [read_elf(p) for p in sorted(root.rglob("*")) if is_elf(p)]
    if not elves:
        return [f"no ELF files under {root}"], []
    bundled = {e.path.name: e for e in elves if e.path.parent.resolve() == lib_dir}
    max_str = ".".join(map(str, max_glibc))

    for e in elves:
        rel = e.path.relative_to(root)
        if e.file_format != "elf64-x86-64":
            problems.append(f"{rel}: format {e.file_format}, Lambda x86_64 needs elf64-x86-64")

        for lib, versions in e.version_refs.items():
            for v in sorted(versions):
                gv = glibc_version(v)
                if v == "GLIBC_PRIVATE":
                    problems.append(
                        f"{rel}: needs GLIBC_PRIVATE from {lib} (tied to one glibc build)"
                    )
                elif gv is not None and gv > max_glibc:
                    problems.append(f"{rel}: needs {v} from {lib}, newer than GLIBC_{max_str}")
                elif lib in bundled and gv is None and v not in bundled[lib].version_defs:
                    problems.append(f"{rel}: needs {v} from {lib}, which the bundled {lib} lacks")

        needs_bundled = False
        for lib in e.needed:
            if lib in bundled:
                needs_bundled = True
            elif lib not in GLIBC_CORE:
                problems.append(f"{rel}: NEEDED {lib} is neither in lib/ nor glibc core")

        if needs_bundled:
            if e.runpath:
                problems.append(
                    f"{rel}: has DT_RUNPATH {':'.join(e.runpath)}; LD_LIBRARY_PATH would override "
                    "it (use DT_RPATH: patchelf --force-rpath)"
                )
            origin = e.path.parent.resolve()
            dirs = []
            for entry in e.rpath:
                if not entry.startswith("$ORIGIN"):
                    problems.append(f"{rel}: RPATH entry {entry} is not relative to $ORIGIN")
                    continue
                dirs.append((origin / entry.replace("$ORIGIN", ".", 1)).resolve())
            if lib_dir not in dirs:
                problems.append(f"{rel}: RPATH {':'.join(e.rpath) or '(none)'} does not reach lib/")
    return problems, elves


def check_loader(root: Path) -> list[str]:
    """Resolve bin/* with the host loader, host library dirs first, as on Lambda."""
    problems: list[str] = []
    lib_dir = (root / "lib").resolve()
    env = {
        "PATH": "/usr/bin:/bin",
        "LD_TRACE_LOADED_OBJECTS": "1",
        "LD_LIBRARY_PATH": ":".join(HOST_LIB_DIRS),
    }
    for exe in sorted((root / "bin").glob("*")):
        if not is_elf(exe):
            continue
        result = subprocess.run([str(exe)], env=env, capture_output=True, text=True, check=False)
        rel = exe.relative_to(root)
        if result.returncode != 0:
            problems.append(f"{rel}: the loader could not resolve it: {result.stderr.strip()}")
            continue
        for line in result.stdout.splitlines():
            # "	libpq.so.5 => /path/lib/libpq.so.5 (0x…)" or "	libfoo.so.1 => not found"
            m = re.match(r"\s*(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$", line)
            if not m:
                continue
            name, where = m.groups()
            if where == "not found":
                problems.append(f"{rel}: {name} not found by the loader")
            elif name not in GLIBC_CORE and Path(where).resolve().parent != lib_dir:
                problems.append(f"{rel}: {name} resolved to {where}, outside the layer")
    return problems


def layer_sizes(root: Path) -> tuple[int, int]:
    """(unpacked bytes, bytes of a deflate zip of the directory, as a layer upload would be)."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    unpacked = sum(p.stat().st_size for p in files)
    with tempfile.TemporaryFile() as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                zf.write(p, p.relative_to(root))
        zipped = tmp.tell()
    return unpacked, zipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("layer", type=Path, help="layer directory holding bin/ and lib/")
    parser.add_argument("--max-glibc", default="2.34", help="newest GLIBC_x.y allowed")
    parser.add_argument(
        "--no-loader", action="store_true", help="skip resolving bin/* with the host loader"
    )
    args = parser.parse_args(argv)
    root: Path = args.layer
    if not (root / "bin").is_dir():
        print(f"FAIL: {root}/bin does not exist", file=sys.stderr)
        return 1
    max_glibc = tuple(int(x) for x in args.max_glibc.split("."))

    problems, elves = check_static(root, max_glibc)
    if not args.no_loader and not problems:
        problems += check_loader(root)

    for e in elves:
        newest = max(
            (v for refs in e.version_refs.values() for v in refs if glibc_version(v)),
            key=lambda v: glibc_version(v) or (),
            default="-",
        )
        print(f"  {e.path.relative_to(root)!s:34} newest glibc symbol {newest}")
    unpacked, zipped = layer_sizes(root)
    print(
        f"layer {root}: {len(elves)} ELF files, {unpacked / 1e6:.1f} MB unpacked, "
        f"{zipped / 1e6:.1f} MB zipped"
    )
    if problems:
        print(f"FAIL: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"OK: every ELF needs GLIBC <= {args.max_glibc} and resolves inside the layer")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
