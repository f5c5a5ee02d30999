"""Build the collectq image and prove .dockerignore keeps VCS data, virtualenvs, local data
and secrets out of every layer: canary files are planted where such things live, the image
is built, and every file of every layer (`podman save`) is listed and matched.
Also prints the image's user and checks the root filesystem can be read-only.
"""

from __future__ import annotations

import re
import sys
import tarfile
import tempfile
from pathlib import Path

from tests.deploy.images import APP, build
from tests.deploy.stack import ROOT, run, succeeds

# Planted before the build (then removed): each must stay out of the image.
CANARIES = (".collectq/deploytest-canary", "deploy/secrets/deploytest-canary")
# Paths (inside the image's source dir /srv/collectq) that must not exist in any layer.
FORBIDDEN = re.compile(
    r"^srv/collectq/(\.git(/|$)|\.venv/|\.collectq/|deploy/secrets/(?!README\.md$)|"
    r"\.pytest_cache/|\.mypy_cache/|\.ruff_cache/|tests/results/|benchmarks/results/|\.ci/)"
)


def layer_files(image: str) -> list[str]:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        archive = Path(tmp) / "image.tar"
        run(["podman", "save", "--format", "docker-archive", "-o", str(archive), image])
        names: list[str] = []
        with tarfile.open(archive) as outer:
            for member in outer.getmembers():
                if member.name.endswith(".tar"):
                    layer = outer.extractfile(member)
                    assert layer is not None
                    with tarfile.open(fileobj=layer) as inner:
                        names += [n.removeprefix("./") for n in inner.getnames()]
    return names


def main() -> int:
    planted = [ROOT / c for c in CANARIES if not (ROOT / c).exists()]
    try:
        for path in planted:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("must never be in an image\n")
        seconds = build(APP)
    finally:
        for path in planted:
            path.unlink(missing_ok=True)
    names = layer_files(APP)
    leaked = sorted(n for n in names if FORBIDDEN.match(n))
    source = [n for n in names if n.startswith("srv/collectq/app/")]
    user = run(["podman", "image", "inspect", "--format", "{{.Config.User}}", APP]).strip()
    ident = run(["podman", "run", "--rm", "--entrypoint", "id", APP]).strip()
    # Docker's --read-only (podman: plus --read-only-tmpfs=false): only the tmpfs is writable.
    probe = (
        "import pathlib,sys; pathlib.Path('/tmp/w').write_text('x')\n"
        "try: pathlib.Path('/srv/collectq/w').write_text('x')\n"
        "except OSError: sys.exit(0)\nsys.exit(1)"
    )
    read_only = succeeds(
        [
            "podman",
            "run",
            "--rm",
            "--read-only",
            "--read-only-tmpfs=false",
            "--tmpfs",
            "/tmp",  # noqa: S108 (a tmpfs in the container)
            "--entrypoint",
            "python3",
            APP,
            "-c",
            probe,
        ]
    )
    print(f"image {APP} built in {seconds:.0f} s; {len(names)} files in its layers")
    print(f"image user: {user} ({ident})")
    print(f"canaries planted: {', '.join(CANARIES)}")
    ok = not leaked and bool(source) and user.startswith("10001") and read_only
    if leaked:
        print("LEAKED into the image:\n  " + "\n  ".join(leaked[:40]))
    else:
        print(
            "none of .git, .venv, .collectq/, deploy/secrets/* (but README.md), caches, "
            "local results is in any layer"
        )
    print(
        f"source present: {len(source)} files under /srv/collectq/app; "
        f"read-only root with a /tmp tmpfs: {'ok' if read_only else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
