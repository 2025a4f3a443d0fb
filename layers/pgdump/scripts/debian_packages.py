#!/usr/bin/env python3
"""Pin and fetch the Debian 12 (bookworm) packages whose libraries the pg_dump layer bundles.

Two commands:

``lock``
    Refresh ``debian-packages.lock`` from the mirror: for each name in ``debian-packages.in``
    record the version bookworm (+ bookworm-updates, bookworm-security) currently serves, with
    its pool file name, size and sha256.

``fetch``
    Download exactly the locked versions into a cache directory and check their sha256. When a
    locked version is gone from the mirror (Debian point releases and security updates replace
    old versions), fail loudly and print the command that refreshes the lock.

apt does the downloading, so the archive's signatures are checked as usual, but it runs with a
private sources list, private package lists, a private cache and an empty dpkg status: the
system's own apt configuration, lists and cache are never read or written (besides apt.conf
itself), and this works on a Debian 13 host too. The mirror is the one the system's apt already
uses (read from /etc/apt/sources.list*), with deb.debian.org as a fallback; set DEBIAN_MIRROR /
DEBIAN_SECURITY_MIRROR to override.

Standard library only: it runs with whatever python3 the build finds.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
ARCH = "amd64"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# Debian 12 ships the keyring as .gpg; Debian 13 may name it .pgp. Both hold bookworm's keys.
DEFAULT_KEYRINGS = (
    "/usr/share/keyrings/debian-archive-keyring.gpg",
    "/usr/share/keyrings/debian-archive-keyring.pgp",
)
HERE = Path(__file__).resolve().parent.parent  # layers/pgdump (or sam build's copy of it)
REFRESH_HINT = "make -C layers/pgdump lock   # then review and commit debian-packages.lock"


class BuildError(Exception):
    """A failure the user must act on; main() prints it without a traceback."""


@dataclass(frozen=True)
class LockedPackage:
    package: str
    version: str
    architecture: str
    filename: str  # path in the archive's pool, as in the Packages index
    size: int
    sha256: str

    @property
    def basename(self) -> str:
        return self.filename.rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------
# Reading the inputs
# ---------------------------------------------------------------------------------------------


def read_package_names(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def read_lock(path: Path) -> list[LockedPackage]:
    if not path.exists():
        raise BuildError(f"{path} is missing; create it with:\n    {REFRESH_HINT}")
    packages = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        package, version, arch, filename, size, sha256 = line.split()
        packages.append(LockedPackage(package, version, arch, filename, int(size), sha256))
    return packages


def write_lock(path: Path, packages: list[LockedPackage], mirrors: tuple[str, str]) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    lines = [
        "# Debian packages bundled into the pg_dump layer, pinned by version and sha256.",
        f"# Generated {today} by `make -C layers/pgdump lock` (do not edit by hand) from the",
        f"# suites {SUITE}, {SUITE}-updates and {SUITE}-security of:",
        f"#   {mirrors[0]}",
        f"#   {mirrors[1]}",
        "# package version architecture pool-filename size sha256",
    ]
    for p in packages:
        lines.append(f"{p.package} {p.version} {p.architecture} {p.filename} {p.size} {p.sha256}")
    path.write_text("\n".join(lines) + "\n")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Finding the mirror the system already uses
# ---------------------------------------------------------------------------------------------


def _system_source_entries() -> list[tuple[str, list[str], str | None]]:  # noqa: C901
    """(uri, suites, signed_by) for each enabled Debian source of the system's apt."""
    entries: list[tuple[str, list[str], str | None]] = []
    files = [Path("/etc/apt/sources.list")]
    parts = Path("/etc/apt/sources.list.d")
    if parts.is_dir():
        files += sorted(parts.glob("*.list")) + sorted(parts.glob("*.sources"))
    for file in files:
        if not file.is_file():
            continue
        text = file.read_text(errors="replace")
        if file.suffix == ".sources":
            # deb822: paragraphs separated by blank lines, "Key: value" fields.
            for para in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in para.splitlines():
                    if line.startswith("#") or ":" not in line or line[0].isspace():
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in fields.get("types", "").split():
                    continue
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split(), fields.get("signed-by")))
        else:
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                m = re.match(
                    r"deb\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)", line
                )
                if not m:
                    continue
                signed_by = None
                for opt in (m.group("opts") or "").split():
                    if opt.startswith("signed-by="):
                        signed_by = opt.split("=", 1)[1]
                entries.append((m.group("uri"), [m.group("suite")], signed_by))
    return entries


def find_mirrors() -> tuple[str, str, str]:
    """(main mirror, security mirror, keyring) to fetch bookworm from."""
    main = os.environ.get("DEBIAN_MIRROR")
    security = os.environ.get("DEBIAN_SECURITY_MIRROR")
    keyring = None
    for uri, suites, signed_by in _system_source_entries():
        if not uri.startswith(("http://", "https://")):
            continue  # mirror+file:, cdrom:, file: … are not something we can reuse here
        # Only Debian's own archives: a third-party repo (nodesource, Google) has other suites.
        is_debian = any(
            re.fullmatch(r"(bookworm|trixie|forky|sid|stable|testing|oldstable)(-\w+)?", s)
            for s in suites
        )
        if not is_debian:
            continue
        if any(s.endswith("-security") for s in suites):
            security = security or uri.rstrip("/")
        else:
            main = main or uri.rstrip("/")
        if signed_by and Path(signed_by).is_file():
            keyring = keyring or signed_by
    if keyring is None:
        keyring = next((k for k in DEFAULT_KEYRINGS if Path(k).is_file()), None)
    if keyring is None:
        raise BuildError(
            "Debian's archive keyring is missing: apt-get install debian-archive-keyring"
        )
    return main or DEFAULT_MIRROR, security or DEFAULT_SECURITY_MIRROR, keyring


# ---------------------------------------------------------------------------------------------
# A private apt
# ---------------------------------------------------------------------------------------------


class PrivateApt:
    """apt-get / apt-cache with their own sources, lists, cache and (empty) dpkg status."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.main, self.security, self.keyring = find_mirrors()
        self.lists = state_dir / "lists"
        self.cache = state_dir / "cache"
        for d in (
            self.lists / "partial",
            self.cache / "archives" / "partial",
            state_dir / "prefs.d",
        ):
            d.mkdir(parents=True, exist_ok=True)
        # An empty status file: installed packages must not influence which version is chosen.
        (state_dir / "status").touch()
        self.sources = state_dir / "sources.list"
        opts = f"[arch={ARCH} signed-by={self.keyring}]"
        self.sources.write_text(
            f"deb {opts} {self.main} {SUITE} main\n"
            f"deb {opts} {self.main} {SUITE}-updates main\n"
            f"deb {opts} {self.security} {SUITE}-security main\n"
        )

    def options(self) -> list[str]:
        opts = {
            "Dir::Etc::SourceList": str(self.sources),
            "Dir::Etc::SourceParts": "-",
            "Dir::State::Lists": str(self.lists),
            "Dir::State::status": str(self.state_dir / "status"),
            "Dir::Cache": str(self.cache),
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": str(self.state_dir / "prefs.d"),
            "APT::Architecture": ARCH,
            "APT::Architectures": ARCH,
        }
        if os.geteuid() == 0:
            # apt would drop to the _apt user to download, which cannot write to our private
            # (root-owned) directories; it then says so and downloads as root anyway. Saying it
            # up front only removes the warning: integrity comes from the signed index and our
            # own sha256 check, not from the sandbox.
            opts["APT::Sandbox::User"] = "root"
        return [arg for key, value in opts.items() for arg in ("-o", f"{key}={value}")]

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        cmd = [tool, *self.options(), *args]
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)

    def update(self) -> None:
        print(f"apt: reading {SUITE} package lists from {self.main} and {self.security}")
        result = self.run("apt-get", "-q", "update")
        if result.returncode != 0:
            raise BuildError(
                f"apt-get update (private lists) failed:\n{result.stdout}{result.stderr}"
            )

    def candidate(self, package: str) -> LockedPackage:
        result = self.run("apt-cache", "show", "--no-all-versions", package)
        if result.returncode != 0 or not result.stdout.strip():
            raise BuildError(f"{package} is not in {SUITE} on {self.main}: {result.stderr.strip()}")
        fields: dict[str, str] = {}
        for line in result.stdout.splitlines():
            if ":" in line and not line.startswith(" "):
                key, value = line.split(":", 1)
                fields.setdefault(key, value.strip())
        return LockedPackage(
            package=fields["Package"],
            version=fields["Version"],
            architecture=fields["Architecture"],
            filename=fields["Filename"],
            size=int(fields["Size"]),
            sha256=fields["SHA256"],
        )


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def cmd_lock(args: argparse.Namespace) -> None:
    apt = PrivateApt(args.apt_dir)
    apt.update()
    names = read_package_names(args.packages)
    new = [apt.candidate(name) for name in names]
    old = {p.package: p for p in read_lock(args.lock)} if args.lock.exists() else {}
    write_lock(args.lock, new, (apt.main, apt.security))
    for p in new:
        before = old.get(p.package)
        change = (
            "new"
            if before is None
            else ("same" if before.version == p.version else f"was {before.version}")
        )
        print(f"  {p.package:18} {p.version:24} ({change})")
    print(f"wrote {args.lock}")


def cmd_fetch(args: argparse.Namespace) -> None:
    locked = read_lock(args.lock)
    wanted = read_package_names(args.packages)
    if sorted(wanted) != sorted(p.package for p in locked):
        raise BuildError(
            f"{args.packages.name} and {args.lock.name} list different packages; refresh with:\n"
            f"    {REFRESH_HINT}"
        )
    args.dest.mkdir(parents=True, exist_ok=True)
    missing = []
    for p in locked:
        target = args.dest / p.basename
        if target.exists() and sha256_of(target) == p.sha256:
            continue
        missing.append(p)
    if not missing:
        print(f"debian packages: all {len(locked)} pinned .debs already in {args.dest}")
        return

    apt = PrivateApt(args.apt_dir)
    apt.update()
    with tempfile.TemporaryDirectory(dir=args.dest, prefix=".download-") as tmp:
        tmp_dir = Path(tmp)
        # One package at a time, so that a vanished version names itself.
        for p in missing:
            result = apt.run("apt-get", "-q", "download", f"{p.package}={p.version}", cwd=tmp_dir)
            if result.returncode != 0:
                raise BuildError(
                    f"{p.package} {p.version} (pinned in {args.lock.name}) cannot be downloaded "
                    f"from {apt.main} / {apt.security}:\n  {result.stderr.strip()}\n"
                    "Debian replaces old versions on point releases and security updates. "
                    f"Refresh the lock, rebuild, run the tests, and commit it:\n    {REFRESH_HINT}"
                )
            # apt names the file <pkg>_<version with ':' as %3a>_<arch>.deb; exactly one is new.
            debs = list(tmp_dir.glob(f"{p.package}_*.deb"))
            if len(debs) != 1:
                raise BuildError(f"expected one .deb for {p.package} in {tmp_dir}, found {debs}")
            got = sha256_of(debs[0])
            if got != p.sha256:
                raise BuildError(
                    f"{debs[0].name}: sha256 {got} does not match the lock's {p.sha256}.\n"
                    f"If the mirror really changed the file, refresh the lock:\n    {REFRESH_HINT}"
                )
            os.replace(debs[0], args.dest / p.basename)
            print(f"  fetched {p.basename} ({p.size // 1024} KiB, sha256 ok)")


def cmd_extract(args: argparse.Namespace) -> None:
    """Unpack every locked .deb (checked again) into one root directory with dpkg-deb -x."""
    if args.root.exists():
        shutil.rmtree(args.root)
    args.root.mkdir(parents=True)
    for p in read_lock(args.lock):
        deb = args.debs / p.basename
        if not deb.exists() or sha256_of(deb) != p.sha256:
            raise BuildError(f"{deb} is missing or does not match the lock; run the fetch step")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(args.root)], check=True)
        # What was unpacked, for the layer's manifest.
        with (args.root / "PACKAGES").open("a") as f:
            f.write(f"{p.package} {p.version} {p.sha256}\n")


@contextlib.contextmanager
def exclusive(apt_dir: Path) -> Iterator[None]:
    """One apt run at a time on the private state (say `make layer` beside `sam build`)."""
    apt_dir.mkdir(parents=True, exist_ok=True)
    with (apt_dir / ".build-lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packages", type=Path, default=HERE / "debian-packages.in")
    parser.add_argument("--lock", type=Path, default=HERE / "debian-packages.lock")
    parser.add_argument("--apt-dir", type=Path, required=True, help="private apt state directory")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("lock", help="pin the mirror's current versions into the lock file")
    fetch = sub.add_parser("fetch", help="download the pinned .debs and check their sha256")
    fetch.add_argument("--dest", type=Path, required=True)
    extract = sub.add_parser("extract", help="unpack the pinned .debs into one directory")
    extract.add_argument("--debs", type=Path, required=True)
    extract.add_argument("--root", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        with exclusive(args.apt_dir):
            {"lock": cmd_lock, "fetch": cmd_fetch, "extract": cmd_extract}[args.command](args)
    except BuildError as exc:
        print(f"\nERROR: {exc}\n", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
