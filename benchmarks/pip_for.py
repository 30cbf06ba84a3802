"""pip, with environment markers evaluated for another OS, machine and Python than this one.

pip chooses wheels for `--platform` and `--python-version`, but evaluates environment markers (ours and every
dependency's) for the machine it runs on; this runs pip with the markers of the target instead, so that a
`pip install --dry-run --report` on x86-64 Linux answers what a Mac or a Windows machine would install
(docs/platforms.md). Everything after PY goes to pip unchanged.
"""

import argparse
import sys

SYSTEMS = {"linux": "Linux", "darwin": "Darwin", "win32": "Windows"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("os", choices=sorted(SYSTEMS), help="the target's sys.platform")
    parser.add_argument("machine", help="the target's platform.machine(): x86_64, aarch64, arm64, AMD64")
    parser.add_argument("python", help="the target's Python, e.g. 3.12")
    parser.add_argument("pip_arguments", nargs=argparse.REMAINDER, help="pip's command and options")
    args = parser.parse_args()
    import pip._vendor.packaging.markers as markers
    from pip._internal.cli.main import main as pip

    target = {"os_name": "nt" if args.os == "win32" else "posix", "sys_platform": args.os,
              "platform_machine": args.machine, "platform_system": SYSTEMS[args.os], "platform_release": "",
              "platform_version": "", "python_version": args.python, "python_full_version": f"{args.python}.0",
              "implementation_version": f"{args.python}.0", "implementation_name": "cpython",
              "platform_python_implementation": "CPython"}
    markers.default_environment = lambda: dict(target)
    return pip(args.pip_arguments)


if __name__ == "__main__":
    sys.exit(main())
